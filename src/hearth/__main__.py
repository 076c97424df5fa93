from hearth.cli.main import main

main()
