"""The ``twistd transport`` plugin: parse options, hand over to transport.service."""

from transport.service import TransportServiceMaker

serviceMaker = TransportServiceMaker()
