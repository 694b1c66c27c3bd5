/// How a model holds its weight files.
///
/// `.mapped` (the default, as SQLite's mmap mode) maps them: loading is instant and weights cost
/// page cache. But a mapped file that shrinks or vanishes while in use (another process truncates
/// it, a network or shared file system drops it) makes reading its pages raise SIGBUS, which ends
/// the host. `.read` reads each file into private memory at load: slower to load, and the
/// weights then count in the process's RSS, but nothing done to the files afterwards reaches
/// the model. Use it for weights on network or shared file systems.
public enum FileAccess: Sendable {
    case mapped
    case read
}
