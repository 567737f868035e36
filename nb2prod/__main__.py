from nb2prod.cli import main

main()
