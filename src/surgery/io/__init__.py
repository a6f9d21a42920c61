"""Files: bounded reads of untrusted files, the one checked ``.keras`` loader, outputs written all or none."""
