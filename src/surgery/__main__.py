from .cli import main

# Guarded: `surgery sweep --jobs N` starts its workers with spawn, which imports this module again.
if __name__ == "__main__":
    main(prog_name="surgery")
