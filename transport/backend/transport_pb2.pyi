from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConnectionError(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONNECTION_ERROR_NETWORK_ERROR: _ClassVar[ConnectionError]
    CONNECTION_ERROR_INVALID_USERNAME: _ClassVar[ConnectionError]
    CONNECTION_ERROR_AUTHENTICATION_FAILED: _ClassVar[ConnectionError]
    CONNECTION_ERROR_AUTHENTICATION_IMPOSSIBLE: _ClassVar[ConnectionError]
    CONNECTION_ERROR_NO_SSL_SUPPORT: _ClassVar[ConnectionError]
    CONNECTION_ERROR_ENCRYPTION_ERROR: _ClassVar[ConnectionError]
    CONNECTION_ERROR_NAME_IN_USE: _ClassVar[ConnectionError]
    CONNECTION_ERROR_INVALID_SETTINGS: _ClassVar[ConnectionError]
    CONNECTION_ERROR_CERT_NOT_PROVIDED: _ClassVar[ConnectionError]
    CONNECTION_ERROR_CERT_UNTRUSTED: _ClassVar[ConnectionError]
    CONNECTION_ERROR_CERT_EXPIRED: _ClassVar[ConnectionError]
    CONNECTION_ERROR_CERT_NOT_ACTIVATED: _ClassVar[ConnectionError]
    CONNECTION_ERROR_CERT_HOSTNAME_MISMATCH: _ClassVar[ConnectionError]
    CONNECTION_ERROR_CERT_FINGERPRINT_MISMATCH: _ClassVar[ConnectionError]
    CONNECTION_ERROR_CERT_SELF_SIGNED: _ClassVar[ConnectionError]
    CONNECTION_ERROR_CERT_OTHER_ERROR: _ClassVar[ConnectionError]
    CONNECTION_ERROR_OTHER_ERROR: _ClassVar[ConnectionError]

class StatusType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STATUS_ONLINE: _ClassVar[StatusType]
    STATUS_AWAY: _ClassVar[StatusType]
    STATUS_FFC: _ClassVar[StatusType]
    STATUS_XA: _ClassVar[StatusType]
    STATUS_DND: _ClassVar[StatusType]
    STATUS_NONE: _ClassVar[StatusType]
    STATUS_INVISIBLE: _ClassVar[StatusType]

class ParticipantFlag(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PARTICIPANT_FLAG_NONE: _ClassVar[ParticipantFlag]
    PARTICIPANT_FLAG_MODERATOR: _ClassVar[ParticipantFlag]
    PARTICIPANT_FLAG_CONFLICT: _ClassVar[ParticipantFlag]
    PARTICIPANT_FLAG_BANNED: _ClassVar[ParticipantFlag]
    PARTICIPANT_FLAG_NOT_AUTHORIZED: _ClassVar[ParticipantFlag]
    PARTICIPANT_FLAG_ME: _ClassVar[ParticipantFlag]
    PARTICIPANT_FLAG_KICKED: _ClassVar[ParticipantFlag]
    PARTICIPANT_FLAG_ROOM_NOT_FOUND: _ClassVar[ParticipantFlag]
CONNECTION_ERROR_NETWORK_ERROR: ConnectionError
CONNECTION_ERROR_INVALID_USERNAME: ConnectionError
CONNECTION_ERROR_AUTHENTICATION_FAILED: ConnectionError
CONNECTION_ERROR_AUTHENTICATION_IMPOSSIBLE: ConnectionError
CONNECTION_ERROR_NO_SSL_SUPPORT: ConnectionError
CONNECTION_ERROR_ENCRYPTION_ERROR: ConnectionError
CONNECTION_ERROR_NAME_IN_USE: ConnectionError
CONNECTION_ERROR_INVALID_SETTINGS: ConnectionError
CONNECTION_ERROR_CERT_NOT_PROVIDED: ConnectionError
CONNECTION_ERROR_CERT_UNTRUSTED: ConnectionError
CONNECTION_ERROR_CERT_EXPIRED: ConnectionError
CONNECTION_ERROR_CERT_NOT_ACTIVATED: ConnectionError
CONNECTION_ERROR_CERT_HOSTNAME_MISMATCH: ConnectionError
CONNECTION_ERROR_CERT_FINGERPRINT_MISMATCH: ConnectionError
CONNECTION_ERROR_CERT_SELF_SIGNED: ConnectionError
CONNECTION_ERROR_CERT_OTHER_ERROR: ConnectionError
CONNECTION_ERROR_OTHER_ERROR: ConnectionError
STATUS_ONLINE: StatusType
STATUS_AWAY: StatusType
STATUS_FFC: StatusType
STATUS_XA: StatusType
STATUS_DND: StatusType
STATUS_NONE: StatusType
STATUS_INVISIBLE: StatusType
PARTICIPANT_FLAG_NONE: ParticipantFlag
PARTICIPANT_FLAG_MODERATOR: ParticipantFlag
PARTICIPANT_FLAG_CONFLICT: ParticipantFlag
PARTICIPANT_FLAG_BANNED: ParticipantFlag
PARTICIPANT_FLAG_NOT_AUTHORIZED: ParticipantFlag
PARTICIPANT_FLAG_ME: ParticipantFlag
PARTICIPANT_FLAG_KICKED: ParticipantFlag
PARTICIPANT_FLAG_ROOM_NOT_FOUND: ParticipantFlag

class Connected(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: str
    def __init__(self, user: _Optional[str] = ...) -> None: ...

class Disconnected(_message.Message):
    __slots__ = ("user", "error", "message")
    USER_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    user: str
    error: int
    message: str
    def __init__(self, user: _Optional[str] = ..., error: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class Login(_message.Message):
    __slots__ = ("user", "legacyName", "password", "extraFields", "settings")
    class UserSettings(_message.Message):
        __slots__ = ("value",)
        class ValueEntry(_message.Message):
            __slots__ = ("key", "value")
            KEY_FIELD_NUMBER: _ClassVar[int]
            VALUE_FIELD_NUMBER: _ClassVar[int]
            key: str
            value: str
            def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
        VALUE_FIELD_NUMBER: _ClassVar[int]
        value: _containers.ScalarMap[str, str]
        def __init__(self, value: _Optional[_Mapping[str, str]] = ...) -> None: ...
    USER_FIELD_NUMBER: _ClassVar[int]
    LEGACYNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    EXTRAFIELDS_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    user: str
    legacyName: str
    password: str
    extraFields: _containers.RepeatedScalarFieldContainer[str]
    settings: Login.UserSettings
    def __init__(self, user: _Optional[str] = ..., legacyName: _Optional[str] = ..., password: _Optional[str] = ..., extraFields: _Optional[_Iterable[str]] = ..., settings: _Optional[_Union[Login.UserSettings, _Mapping]] = ...) -> None: ...

class Logout(_message.Message):
    __slots__ = ("user", "legacyName")
    USER_FIELD_NUMBER: _ClassVar[int]
    LEGACYNAME_FIELD_NUMBER: _ClassVar[int]
    user: str
    legacyName: str
    def __init__(self, user: _Optional[str] = ..., legacyName: _Optional[str] = ...) -> None: ...

class Buddy(_message.Message):
    __slots__ = ("userName", "buddyName", "alias", "group", "status", "statusMessage", "iconHash", "blocked")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    BUDDYNAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUSMESSAGE_FIELD_NUMBER: _ClassVar[int]
    ICONHASH_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_FIELD_NUMBER: _ClassVar[int]
    userName: str
    buddyName: str
    alias: str
    group: _containers.RepeatedScalarFieldContainer[str]
    status: StatusType
    statusMessage: str
    iconHash: str
    blocked: bool
    def __init__(self, userName: _Optional[str] = ..., buddyName: _Optional[str] = ..., alias: _Optional[str] = ..., group: _Optional[_Iterable[str]] = ..., status: _Optional[_Union[StatusType, str]] = ..., statusMessage: _Optional[str] = ..., iconHash: _Optional[str] = ..., blocked: _Optional[bool] = ...) -> None: ...

class Buddies(_message.Message):
    __slots__ = ("buddy",)
    BUDDY_FIELD_NUMBER: _ClassVar[int]
    buddy: _containers.RepeatedCompositeFieldContainer[Buddy]
    def __init__(self, buddy: _Optional[_Iterable[_Union[Buddy, _Mapping]]] = ...) -> None: ...

class Attachment(_message.Message):
    __slots__ = ("url", "mimeType", "description")
    URL_FIELD_NUMBER: _ClassVar[int]
    MIMETYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    url: str
    mimeType: str
    description: str
    def __init__(self, url: _Optional[str] = ..., mimeType: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class ConversationMessage(_message.Message):
    __slots__ = ("userName", "buddyName", "message", "nickname", "xhtml", "timestamp", "headline", "id", "pm", "carbon", "attachment")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    BUDDYNAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    NICKNAME_FIELD_NUMBER: _ClassVar[int]
    XHTML_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    HEADLINE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    PM_FIELD_NUMBER: _ClassVar[int]
    CARBON_FIELD_NUMBER: _ClassVar[int]
    ATTACHMENT_FIELD_NUMBER: _ClassVar[int]
    userName: str
    buddyName: str
    message: str
    nickname: str
    xhtml: str
    timestamp: str
    headline: bool
    id: str
    pm: bool
    carbon: bool
    attachment: _containers.RepeatedCompositeFieldContainer[Attachment]
    def __init__(self, userName: _Optional[str] = ..., buddyName: _Optional[str] = ..., message: _Optional[str] = ..., nickname: _Optional[str] = ..., xhtml: _Optional[str] = ..., timestamp: _Optional[str] = ..., headline: _Optional[bool] = ..., id: _Optional[str] = ..., pm: _Optional[bool] = ..., carbon: _Optional[bool] = ..., attachment: _Optional[_Iterable[_Union[Attachment, _Mapping]]] = ...) -> None: ...

class Room(_message.Message):
    __slots__ = ("userName", "nickname", "room", "password")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    NICKNAME_FIELD_NUMBER: _ClassVar[int]
    ROOM_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    userName: str
    nickname: str
    room: str
    password: str
    def __init__(self, userName: _Optional[str] = ..., nickname: _Optional[str] = ..., room: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class RoomList(_message.Message):
    __slots__ = ("room", "name", "user")
    ROOM_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    room: _containers.RepeatedScalarFieldContainer[str]
    name: _containers.RepeatedScalarFieldContainer[str]
    user: str
    def __init__(self, room: _Optional[_Iterable[str]] = ..., name: _Optional[_Iterable[str]] = ..., user: _Optional[str] = ...) -> None: ...

class Participant(_message.Message):
    __slots__ = ("userName", "room", "nickname", "flag", "status", "statusMessage", "newname", "iconHash", "alias")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    ROOM_FIELD_NUMBER: _ClassVar[int]
    NICKNAME_FIELD_NUMBER: _ClassVar[int]
    FLAG_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUSMESSAGE_FIELD_NUMBER: _ClassVar[int]
    NEWNAME_FIELD_NUMBER: _ClassVar[int]
    ICONHASH_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    userName: str
    room: str
    nickname: str
    flag: int
    status: StatusType
    statusMessage: str
    newname: str
    iconHash: str
    alias: str
    def __init__(self, userName: _Optional[str] = ..., room: _Optional[str] = ..., nickname: _Optional[str] = ..., flag: _Optional[int] = ..., status: _Optional[_Union[StatusType, str]] = ..., statusMessage: _Optional[str] = ..., newname: _Optional[str] = ..., iconHash: _Optional[str] = ..., alias: _Optional[str] = ...) -> None: ...

class VCard(_message.Message):
    __slots__ = ("userName", "buddyName", "id", "fullname", "nickname", "photo")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    BUDDYNAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    FULLNAME_FIELD_NUMBER: _ClassVar[int]
    NICKNAME_FIELD_NUMBER: _ClassVar[int]
    PHOTO_FIELD_NUMBER: _ClassVar[int]
    userName: str
    buddyName: str
    id: int
    fullname: str
    nickname: str
    photo: bytes
    def __init__(self, userName: _Optional[str] = ..., buddyName: _Optional[str] = ..., id: _Optional[int] = ..., fullname: _Optional[str] = ..., nickname: _Optional[str] = ..., photo: _Optional[bytes] = ...) -> None: ...

class Status(_message.Message):
    __slots__ = ("userName", "status", "statusMessage")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUSMESSAGE_FIELD_NUMBER: _ClassVar[int]
    userName: str
    status: StatusType
    statusMessage: str
    def __init__(self, userName: _Optional[str] = ..., status: _Optional[_Union[StatusType, str]] = ..., statusMessage: _Optional[str] = ...) -> None: ...

class Stats(_message.Message):
    __slots__ = ("res", "init_res", "shared", "id")
    RES_FIELD_NUMBER: _ClassVar[int]
    INIT_RES_FIELD_NUMBER: _ClassVar[int]
    SHARED_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    res: int
    init_res: int
    shared: int
    id: str
    def __init__(self, res: _Optional[int] = ..., init_res: _Optional[int] = ..., shared: _Optional[int] = ..., id: _Optional[str] = ...) -> None: ...

class File(_message.Message):
    __slots__ = ("userName", "buddyName", "fileName", "size", "ftID")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    BUDDYNAME_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    FTID_FIELD_NUMBER: _ClassVar[int]
    userName: str
    buddyName: str
    fileName: str
    size: int
    ftID: int
    def __init__(self, userName: _Optional[str] = ..., buddyName: _Optional[str] = ..., fileName: _Optional[str] = ..., size: _Optional[int] = ..., ftID: _Optional[int] = ...) -> None: ...

class FileTransferData(_message.Message):
    __slots__ = ("ftID", "data")
    FTID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ftID: int
    data: bytes
    def __init__(self, ftID: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class BackendConfig(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: str
    def __init__(self, config: _Optional[str] = ...) -> None: ...

class APIVersion(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class WrapperMessage(_message.Message):
    __slots__ = ("type", "payload")
    class Type(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        TYPE_CONNECTED: _ClassVar[WrapperMessage.Type]
        TYPE_DISCONNECTED: _ClassVar[WrapperMessage.Type]
        TYPE_LOGIN: _ClassVar[WrapperMessage.Type]
        TYPE_LOGOUT: _ClassVar[WrapperMessage.Type]
        TYPE_BUDDY_CHANGED: _ClassVar[WrapperMessage.Type]
        TYPE_BUDDY_REMOVED: _ClassVar[WrapperMessage.Type]
        TYPE_CONV_MESSAGE: _ClassVar[WrapperMessage.Type]
        TYPE_PING: _ClassVar[WrapperMessage.Type]
        TYPE_PONG: _ClassVar[WrapperMessage.Type]
        TYPE_JOIN_ROOM: _ClassVar[WrapperMessage.Type]
        TYPE_LEAVE_ROOM: _ClassVar[WrapperMessage.Type]
        TYPE_PARTICIPANT_CHANGED: _ClassVar[WrapperMessage.Type]
        TYPE_ROOM_NICKNAME_CHANGED: _ClassVar[WrapperMessage.Type]
        TYPE_ROOM_SUBJECT_CHANGED: _ClassVar[WrapperMessage.Type]
        TYPE_VCARD: _ClassVar[WrapperMessage.Type]
        TYPE_STATUS_CHANGED: _ClassVar[WrapperMessage.Type]
        TYPE_BUDDY_TYPING: _ClassVar[WrapperMessage.Type]
        TYPE_BUDDY_STOPPED_TYPING: _ClassVar[WrapperMessage.Type]
        TYPE_BUDDY_TYPED: _ClassVar[WrapperMessage.Type]
        TYPE_AUTH_REQUEST: _ClassVar[WrapperMessage.Type]
        TYPE_ATTENTION: _ClassVar[WrapperMessage.Type]
        TYPE_STATS: _ClassVar[WrapperMessage.Type]
        TYPE_FT_START: _ClassVar[WrapperMessage.Type]
        TYPE_FT_FINISH: _ClassVar[WrapperMessage.Type]
        TYPE_FT_DATA: _ClassVar[WrapperMessage.Type]
        TYPE_FT_PAUSE: _ClassVar[WrapperMessage.Type]
        TYPE_FT_CONTINUE: _ClassVar[WrapperMessage.Type]
        TYPE_EXIT: _ClassVar[WrapperMessage.Type]
        TYPE_BACKEND_CONFIG: _ClassVar[WrapperMessage.Type]
        TYPE_QUERY: _ClassVar[WrapperMessage.Type]
        TYPE_ROOM_LIST: _ClassVar[WrapperMessage.Type]
        TYPE_CONV_MESSAGE_ACK: _ClassVar[WrapperMessage.Type]
        TYPE_RAW_XML: _ClassVar[WrapperMessage.Type]
        TYPE_BUDDIES: _ClassVar[WrapperMessage.Type]
        TYPE_API_VERSION: _ClassVar[WrapperMessage.Type]
    TYPE_CONNECTED: WrapperMessage.Type
    TYPE_DISCONNECTED: WrapperMessage.Type
    TYPE_LOGIN: WrapperMessage.Type
    TYPE_LOGOUT: WrapperMessage.Type
    TYPE_BUDDY_CHANGED: WrapperMessage.Type
    TYPE_BUDDY_REMOVED: WrapperMessage.Type
    TYPE_CONV_MESSAGE: WrapperMessage.Type
    TYPE_PING: WrapperMessage.Type
    TYPE_PONG: WrapperMessage.Type
    TYPE_JOIN_ROOM: WrapperMessage.Type
    TYPE_LEAVE_ROOM: WrapperMessage.Type
    TYPE_PARTICIPANT_CHANGED: WrapperMessage.Type
    TYPE_ROOM_NICKNAME_CHANGED: WrapperMessage.Type
    TYPE_ROOM_SUBJECT_CHANGED: WrapperMessage.Type
    TYPE_VCARD: WrapperMessage.Type
    TYPE_STATUS_CHANGED: WrapperMessage.Type
    TYPE_BUDDY_TYPING: WrapperMessage.Type
    TYPE_BUDDY_STOPPED_TYPING: WrapperMessage.Type
    TYPE_BUDDY_TYPED: WrapperMessage.Type
    TYPE_AUTH_REQUEST: WrapperMessage.Type
    TYPE_ATTENTION: WrapperMessage.Type
    TYPE_STATS: WrapperMessage.Type
    TYPE_FT_START: WrapperMessage.Type
    TYPE_FT_FINISH: WrapperMessage.Type
    TYPE_FT_DATA: WrapperMessage.Type
    TYPE_FT_PAUSE: WrapperMessage.Type
    TYPE_FT_CONTINUE: WrapperMessage.Type
    TYPE_EXIT: WrapperMessage.Type
    TYPE_BACKEND_CONFIG: WrapperMessage.Type
    TYPE_QUERY: WrapperMessage.Type
    TYPE_ROOM_LIST: WrapperMessage.Type
    TYPE_CONV_MESSAGE_ACK: WrapperMessage.Type
    TYPE_RAW_XML: WrapperMessage.Type
    TYPE_BUDDIES: WrapperMessage.Type
    TYPE_API_VERSION: WrapperMessage.Type
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    type: WrapperMessage.Type
    payload: bytes
    def __init__(self, type: _Optional[_Union[WrapperMessage.Type, str]] = ..., payload: _Optional[bytes] = ...) -> None: ...
