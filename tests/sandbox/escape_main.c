/* The standalone sb_escape binary. */
int sb_escape_main(int argc, char **argv);

int main(int argc, char **argv)
{
	return sb_escape_main(argc, argv);
}
