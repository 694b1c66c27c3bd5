#if canImport(Glibc)
import Glibc
#endif

/// A synthetic chest radiograph for the demo: two dark lung fields with rib shadows
/// in a brighter body, 16-bit gray samples (brighter = denser), noise from a seed.
/// Its scale suits models/nodule-demo at twice its standard size (480 for 240).
enum SyntheticRadiograph {
    static func samples(width: Int, height: Int, seed: UInt64) throws -> [UInt16] {
        let noise = try RandnCommand.randn(shape: [width * height], seed: seed)
        return (0..<(width * height)).map { index in
            let u = Double(index % width) / Double(width), v = Double(index / width) / Double(height)
            var brightness = 0.75
            for side in [0.3, 0.7] {  // lung fields: dark ellipses with soft edges
                let distance = ((u - side) / 0.17) * ((u - side) / 0.17) + ((v - 0.5) / 0.33) * ((v - 0.5) / 0.33)
                brightness -= 0.45 / (1 + exp((distance - 1) * 12))
            }
            if sin(v * 2 * Double.pi * 9 + 4 * (u - 0.5) * (u - 0.5)) > 0.6 { brightness += 0.08 }  // rib shadows
            brightness += 0.01 * Double(noise.floats[index])
            return UInt16(min(max((brightness * 65535).rounded(), 0), 65535))
        }
    }
}
