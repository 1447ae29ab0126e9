from transport_backends.irc import main

main()
