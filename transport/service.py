"""Builds the twistd service tree from the configuration."""
from twisted.application import service
from twisted.python import usage
from zope.interface import implementer
from twisted.plugin import IPlugin
from twisted.application.service import IServiceMaker


class Options(usage.Options):
    optParameters = [["config", "c", None, "configuration file"]]


@implementer(IServiceMaker, IPlugin)
class TransportServiceMaker:
    tapname = "transport"
    description = "Transport gateway"
    options = Options

    def makeService(self, options: Options) -> service.IService:
        return service.MultiService()
