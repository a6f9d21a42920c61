"""An exporter that writes half its file and then waits on a FIFO: a save a test interrupts at a known point.

Not one of the four broken plugins (FAULTS): it works, only slowly, as long as the test holds it.
"""

import os
import select

from surgery import hookimpl


def export(model, path, options):
    with open(path, "wb") as out:
        out.write(b"the first half")
        out.flush()
        # Blocks until the test opens the FIFO's other end, then until it writes or closes it (Hold).
        with open(os.environ["FAULT_HOLD_FIFO"], "rb", buffering=0) as hold:
            # Waits of 50 ms, back in Python between them: Python runs a signal handler in the main thread,
            # and a SIGTERM the kernel gives to one of TensorFlow's threads does not interrupt the main
            # thread's read, so a read that blocks until the test lets go would run the handler only then
            # (seen with TF_NUM_INTRAOP_THREADS=1: about one signal in five).
            while not select.select([hold], [], [], 0.05)[0]:
                pass
            hold.read()
        out.write(b" and the second")
    return "held, then written"


@hookimpl
def surgery_register_exporters(register):
    register("hold", export, suffix=".hold", description="waits on $FAULT_HOLD_FIFO in the middle of its file")
