"""How every stage script ends: `cli.run(main)` in its `if __name__ == "__main__":` block.

Errors a user can act on (bad data, a missing or damaged file, a wrong flag or backend: ValueError
and OSError with their subclasses, plus the classes a script adds, e.g. training.NonFiniteLoss)
print one line `error: <message>` on stderr and exit with status 2, as argparse does for a bad flag.
Any other exception is a bug and keeps its traceback. `--debug` anywhere on the command line (taken
out before the script parses its arguments) or TINYBERT_DEBUG=1 shows the traceback of every error.
"""
import os
import sys
import traceback

DEBUG_FLAG = "--debug"
DEBUG_ENV = "TINYBERT_DEBUG"
USER_ERRORS = (ValueError, OSError)
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C


def debug_wanted(argv):
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def error_line(error):
    """The exception as one line: its message, or its class name when it has none."""
    message = " ".join(str(error).split("\n")).strip()
    return message or type(error).__name__


def run(main, *user_errors, argv=None):
    """Call main(argv) and exit: with main's int result (0 for anything else), or 2 on a user error."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = debug_wanted(argv)
    argv = [arg for arg in argv if arg != DEBUG_FLAG]
    try:
        result = main(argv)
    except (*USER_ERRORS, *user_errors) as e:
        if debug:
            traceback.print_exc()
        print(f"error: {error_line(e)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt as e:  # training.fit adds the step reached and the command to continue
        if debug:
            traceback.print_exc()
        print("interrupted" + (f" {e}" if str(e) else ""), file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(result if isinstance(result, int) and not isinstance(result, bool) else 0)

