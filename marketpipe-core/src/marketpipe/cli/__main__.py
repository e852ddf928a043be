from marketpipe.cli.main import main

main()
