-- Records a job's progress. ARGV: 1 job id, 2 progress (JSON). Returns 0, or -1 if the job is gone.
if rcall("EXISTS", P .. ARGV[1]) == 0 then return -1 end
rcall("HSET", P .. ARGV[1], "progress", ARGV[2])
emit("progress", "jobId", ARGV[1], "data", ARGV[2])
return 0
