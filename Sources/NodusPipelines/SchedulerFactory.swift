#if canImport(Glibc)
import Glibc
#endif
import NodusCore
import NodusFormats

/// Makes a `Scheduler` from a diffusers `scheduler_config.json`, dispatching on
/// its `_class_name`, as diffusers' `SchedulerMixin.from_pretrained` /
/// `from_config` do. Keys the class does not take are ignored, as diffusers does.
///
/// Limitations: only the classes of `classNames`; others are
/// `NodusError.unsupported`, with a message that lists the supported ones.
public enum SchedulerFactory {
    /// The most inference steps a schedule may have: a bound, so a caller cannot make a
    /// scheduler allocate gigabytes of timesteps.
    public static let maximumSteps = 100_000

    /// The `_class_name` values `make` accepts.
    public static let classNames = [
        "DDIMScheduler", "DDPMScheduler", "FlowMatchEulerDiscreteScheduler", "EulerDiscreteScheduler",
        "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler", "PNDMScheduler",
        "UniPCMultistepScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler", "LCMScheduler",
        "FlowMatchHeunDiscreteScheduler",
    ]

    /// - Parameters:
    ///   - config: the parsed scheduler config (a JSON object with `_class_name`).
    ///   - context: where it came from, for error messages.
    /// - Throws: `NodusError.format` when the config is not an object, has no
    ///   `_class_name` or has a field of the wrong type; `NodusError.unsupported`
    ///   for an unknown class or a field value that is not supported.
    public static func make(config: JSONValue, context: String) throws -> any Scheduler {
        let reader = try JSONObjectReader(config, context: context)
        let className = try reader.string("_class_name")
        switch className {
        case "DDIMScheduler": return try DDIMScheduler(config: config, context: context)
        case "DDPMScheduler": return try DDPMScheduler(config: config, context: context)
        case "FlowMatchEulerDiscreteScheduler": return try FlowMatchEulerDiscreteScheduler(config: config, context: context)
        case "FlowMatchHeunDiscreteScheduler": return try FlowMatchHeunDiscreteScheduler(config: config, context: context)
        case "EulerDiscreteScheduler": return try EulerDiscreteScheduler(config: config, context: context)
        case "EulerAncestralDiscreteScheduler": return try EulerAncestralDiscreteScheduler(config: config, context: context)
        case "DPMSolverMultistepScheduler": return try DPMSolverMultistepScheduler(config: config, context: context)
        case "PNDMScheduler": return try PNDMScheduler(config: config, context: context)
        case "UniPCMultistepScheduler": return try UniPCMultistepScheduler(config: config, context: context)
        case "HeunDiscreteScheduler": return try HeunDiscreteScheduler(config: config, context: context)
        case "LMSDiscreteScheduler": return try LMSDiscreteScheduler(config: config, context: context)
        case "LCMScheduler": return try LCMScheduler(config: config, context: context)
        default:
            throw NodusError.unsupported(
                "\(context): scheduler class '\(className)' is not supported (supported: \(classNames.joined(separator: ", ")))")
        }
    }

    /// Loads `path`: a `scheduler_config.json` file, or a folder holding one
    /// (a diffusers `scheduler/` folder).
    /// - Throws: `NodusError.io` when the file cannot be read, `NodusError.format`
    ///   when it is not JSON, and the errors of `make`.
    public static func load(path: String) throws -> any Scheduler {
        var status = stat()
        var file = path
        if stat(path, &status) == 0, (status.st_mode & S_IFMT) == S_IFDIR {
            file = path.hasSuffix("/") ? path + "scheduler_config.json" : path + "/scheduler_config.json"
        }
        let mapped = try MappedFile(path: file)
        let config = try JSONValue.parse(UnsafeRawBufferPointer(start: mapped.bytes, count: mapped.byteCount),
                                         context: "'\(file)'")
        return try make(config: config, context: "'\(file)'")
    }
}
