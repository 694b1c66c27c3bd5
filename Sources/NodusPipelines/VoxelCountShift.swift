#if canImport(Glibc)
import Glibc
#endif
import NodusCore
import NodusFormats

/// MONAI `RFlowScheduler`'s timestep transform for large images and volumes,
/// read from a flow-matching scheduler's config with MONAI's argument names
/// (`use_timestep_transform`, `base_img_size_numel`, `spatial_dim`,
/// `transform_scale`): t' = r t / (1 + (r - 1) t) with
/// r = (voxels / base_img_size_numel)^(1 / spatial_dim) x transform_scale,
/// which is diffusers' flow `shift` by r. So it multiplies the config's `shift`
/// (shifts compose by multiplying) and spends more steps at high noise for
/// larger volumes. `voxels` is the latent's size per channel, as MONAI's
/// `set_timesteps(input_img_size_numel=...)` takes it.
///
/// Limitations: the schedule stays diffusers' (linspace from sigma_max to
/// sigma_min, float32), not MONAI's (1 - i / N, rounded to integers and to
/// float16 when `use_discrete_timesteps`).
struct VoxelCountShift: Sendable {
    let baseSize: Int
    let spatialDimensions: Int
    let scale: Double

    /// nil when `use_timestep_transform` is false or absent.
    init?(reader: JSONObjectReader) throws {
        guard try reader.bool("use_timestep_transform", default: false) else { return nil }
        baseSize = try reader.int("base_img_size_numel", default: 32 * 32 * 32)
        spatialDimensions = try reader.int("spatial_dim", default: 3)
        scale = try reader.double("transform_scale", default: 1)
        guard baseSize > 0, (1...3).contains(spatialDimensions), scale.isFinite, scale > 0 else {
            throw NodusError.format("\(reader.context): the timestep transform needs base_img_size_numel > 0 (got \(baseSize)), spatial_dim in 1...3 (got \(spatialDimensions)) and transform_scale > 0 (got \(scale))")
        }
    }

    /// The shift factor r for a latent of `spatialSize` elements per channel.
    func shift(spatialSize: Int) -> Double {
        pow(Double(spatialSize) / Double(baseSize), 1 / Double(spatialDimensions)) * scale
    }
}
