import NodusCore
