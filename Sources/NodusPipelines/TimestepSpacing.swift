import NodusCore
import NodusFormats

/// How DDIM and DDPM pick inference timesteps from the training timesteps
/// (`timestep_spacing`; table 2 of arXiv 2305.08891).
///
/// Matches diffusers 0.42.1 `set_timesteps` of `DDIMScheduler` / `DDPMScheduler`,
/// including numpy's float64 `arange` / `linspace` and round-half-to-even. As in
/// diffusers, "trailing" can give one timestep more than asked, the last being -1
/// (numpy's `arange(N, 0, -N / count)` has count + 1 elements for some counts,
/// e.g. 61 of 1000); the schedulers then index the training schedule from the end,
/// as torch does.
///
/// Limitations: custom timestep lists (`set_timesteps(timesteps=...)`) are not supported.
public enum TimestepSpacing: String, Sendable, CaseIterable {
    case leading
    case trailing
    case linspace

    /// The config's `timestep_spacing` (default "leading").
    init(reader: JSONObjectReader) throws {
        let name = try reader.choice("timestep_spacing", default: "leading", allowed: Self.allCases.map(\.rawValue))
        self = Self(rawValue: name) ?? .leading
    }

    /// The descending timesteps for `count` inference steps.
    /// - Parameters:
    ///   - trainTimesteps: `num_train_timesteps`.
    ///   - stepsOffset: `steps_offset`, added for `leading` only (as diffusers does).
    /// - Throws: `NodusError.invalidArgument` when `count` is not in `1...trainTimesteps`.
    public func timesteps(count: Int, trainTimesteps: Int, stepsOffset: Int, className: String) throws -> [Int] {
        guard count >= 1 else {
            throw NodusError.invalidArgument("\(className).setTimesteps: the step count must be at least 1, got \(count)")
        }
        guard count <= trainTimesteps else {
            throw NodusError.invalidArgument(
                "\(className).setTimesteps: \(count) steps cannot be more than num_train_timesteps = \(trainTimesteps)")
        }
        switch self {
        case .linspace:
            // np.linspace(0, N - 1, count).round()[::-1]
            let last = Double(trainTimesteps - 1)
            guard count > 1 else { return [0] }
            let step = last / Double(count - 1)
            let values = (0..<count).map { index in
                index == count - 1 ? last : Double(index) * step
            }
            return values.reversed().map { Int($0.rounded(.toNearestOrEven)) }
        case .leading:
            let ratio = trainTimesteps / count
            return (0..<count).reversed().map { $0 * ratio + stepsOffset }
        case .trailing:
            // np.round(np.arange(N, 0, -N / count)) - 1; numpy fills arange as start + i * (x1 - x0).
            let start = Double(trainTimesteps)
            let delta = -(Double(trainTimesteps) / Double(count))
            let length = Int(((0 - start) / delta).rounded(.up))
            let second = start + delta
            let filledDelta = second - start
            return (0..<max(length, 0)).map { index in
                let value = index == 0 ? start : (index == 1 ? second : start + Double(index) * filledDelta)
                return Int(value.rounded(.toNearestOrEven)) - 1
            }
        }
    }
}
