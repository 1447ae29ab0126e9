from transport_backends.echo import main

main()
