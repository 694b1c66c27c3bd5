import NodusCore
import NodusFormats

/// How a sigma-based scheduler respaces its inference sigmas: none, Karras et al.
/// (arXiv 2206.00364, rho = 7), exponential, or Lu et al.'s uniform log-SNR
/// (DPM-Solver only); read from `use_karras_sigmas`, `use_exponential_sigmas`,
/// `use_beta_sigmas`, `use_lu_lambdas` and the optional `sigma_min` / `sigma_max`.
///
/// Matches diffusers 0.42.1's `_convert_to_karras` / `_convert_to_exponential`
/// / `_convert_to_lu`, which read `sigma_min` / `sigma_max` from the config when
/// it holds them (not null) and otherwise take the schedule's own ends.
///
/// Limitations: `use_beta_sigmas` is refused (diffusers needs scipy's beta
/// distribution for it).
public struct SigmaConversion: Sendable {
    public enum Kind: String, Sendable {
        case none
        case karras
        case exponential
        case lu
    }

    public let kind: Kind
    public let configSigmaMin: Double?
    public let configSigmaMax: Double?

    /// - Parameter allowsLu: whether the class has `use_lu_lambdas` (DPM-Solver).
    /// - Throws: `NodusError.unsupported` for several conversions at once or `use_beta_sigmas`.
    init(reader: JSONObjectReader, allowsLu: Bool = false) throws {
        let karras = try reader.bool("use_karras_sigmas", default: false)
        let exponential = try reader.bool("use_exponential_sigmas", default: false)
        let beta = try reader.bool("use_beta_sigmas", default: false)
        let lu = allowsLu ? try reader.bool("use_lu_lambdas", default: false) : false
        if [karras, exponential, beta].filter({ $0 }).count > 1 {
            throw NodusError.unsupported(
                "\(reader.context): only one of 'use_karras_sigmas', 'use_exponential_sigmas', 'use_beta_sigmas' can be true")
        }
        if beta {
            throw NodusError.unsupported(
                "\(reader.context): 'use_beta_sigmas' = true is not supported (diffusers needs scipy's beta distribution)")
        }
        kind = karras ? .karras : (lu ? .lu : (exponential ? .exponential : .none))
        configSigmaMin = try reader.optionalDouble("sigma_min")
        configSigmaMax = try reader.optionalDouble("sigma_max")
    }

    /// The converted sigmas (float64) between the ends of `descending` (float64 values
    /// of a descending sigma schedule), or nil for `.none` / `.lu`.
    func convert(_ descending: [Double], count: Int) -> [Double]? {
        guard let first = descending.first, let last = descending.last else { return nil }
        let minimum = configSigmaMin ?? last, maximum = configSigmaMax ?? first
        switch kind {
        case .karras: return DiscreteSigmas.karras(minimum: minimum, maximum: maximum, count: count)
        case .exponential: return DiscreteSigmas.exponential(minimum: minimum, maximum: maximum, count: count)
        case .none, .lu: return nil
        }
    }
}
