"""The sink kit's killed writer, run as ``python -m marketpipe.testing.kits.sink_writer``."""

from marketpipe.testing.kits.sink import writer_main

if __name__ == "__main__":
    writer_main()
