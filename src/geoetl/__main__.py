from geoetl.cli.main import main

main()
