"""The command line: argument parsing, running one subcommand, terminal output, doctor. May import everything below it (server, chat, alerts, state, settings) and commands."""
