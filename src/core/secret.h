/* Secrets that flowd generates on first start when the operator gives none (AP_API_KEY,
 * AP_JWT_SECRET): kept in a 0600 file under AP_CONFIG_PATH so that every process sharing the
 * directory (app, workers, the CLI clients) uses the same value. */
#ifndef FL_SECRET_H
#define FL_SECRET_H

struct fl_err;

/* Returns in *out (heap, fl_free) the secret in dir/name, creating dir (0700) and the file
 * (0600, 32 random bytes as hex) when it does not exist. *created is set to 1 when this call
 * generated it (the caller prints a new API key once), else 0. Concurrent first starts agree on
 * one value: the file is created with O_EXCL and a loser reads the winner's file. */
int fl_secret_load_or_create(const char *dir, const char *name, char **out, int *created,
			     struct fl_err *err);

/* Reads dir/name without creating it; FL_ENOTFOUND when absent. */
int fl_secret_read(const char *dir, const char *name, char **out, struct fl_err *err);

#endif
