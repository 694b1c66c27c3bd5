#if canImport(Glibc)
import Glibc
#endif
import XCTest
import NodusCore
import NodusFormats
import NodusModels

/// VAE encoding, latent sampling and tiling against diffusers references
/// (`tests/reference/make_vae_fixtures.py`), and the errors around them.
final class VAEEncoderTests: XCTestCase {
    private func vae(_ name: String = "vae-tiny") throws -> AutoencoderKLModel {
        try XCTUnwrap(try ModelLoader.load(path: Fixtures.path(name)) as? AutoencoderKLModel)
    }

    private func assertMatches(_ ours: Tensor, _ reference: Tensor, _ what: String,
                               file: StaticString = #filePath, line: UInt = #line) {
        let error = relativeError(ours, reference)
        XCTAssertLessThan(error, 1e-4, "\(what): shape \(ours.shape) vs \(reference.shape), relative error \(error)",
                          file: file, line: line)
    }

    private func assertThrows(_ code: NodusError.Code, mentioning fragment: String, _ body: () throws -> Void,
                              file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            guard let error = error as? NodusError else { return XCTFail("not a NodusError: \(error)", file: file, line: line) }
            XCTAssertEqual(error.code, code, error.message, file: file, line: line)
            XCTAssertTrue(error.message.contains(fragment), "'\(fragment)' not in: \(error.message)", file: file, line: line)
        }
    }

    func testEncodeMatchesDiffusers() throws {
        let model = try vae()
        let reference = try SafetensorsFile(path: Fixtures.path("vae-tiny-encode.safetensors"))
        for suffix in ["", "2"] {
            let image = try reference.tensor("image" + suffix)
            XCTAssertEqual(try model.encodedShape(forImage: image.shape), try reference.tensor("mean" + suffix).shape)
            let posterior = try model.encode(image)
            assertMatches(posterior.mean, try reference.tensor("mean" + suffix), "mean\(suffix)")
            assertMatches(posterior.logvar, try reference.tensor("logvar" + suffix), "logvar\(suffix)")
        }
    }

    func testLatentSampleAndMode() throws {
        let model = try vae()
        let reference = try SafetensorsFile(path: Fixtures.path("vae-tiny-encode.safetensors"))
        let image = try reference.tensor("image")
        assertMatches(try model.encodeLatent(image, noise: try reference.tensor("noise")), try reference.tensor("latent"),
                      "latent_dist.sample() * scaling_factor")
        assertMatches(try model.encodeLatent(image, noise: nil), try reference.tensor("latent_mode"),
                      "latent_dist.mode() * scaling_factor")
        var generator = TorchGenerator(seed: 7100)
        let drawn = try Tensor(shape: [1, 4, 8, 8], floats: generator.normal(count: 256))
        XCTAssertEqual(drawn.floatArray(), try reference.tensor("noise").floatArray(), "torch.randn with the seed")
    }

    func testClampedLogvarAndThreeLevels() throws {
        let model = try vae("vae-clamp")
        let reference = try SafetensorsFile(path: Fixtures.path("vae-clamp.safetensors"))
        let posterior = try model.encode(try reference.tensor("clamp_image"))
        assertMatches(posterior.mean, try reference.tensor("clamp_mean"), "vae-clamp mean")
        assertMatches(posterior.logvar, try reference.tensor("clamp_logvar"), "vae-clamp logvar")
        let logvar = posterior.logvar.floatArray()
        XCTAssertTrue(logvar.contains(20) && logvar.contains(-30), "logvar reaches both clamp limits")
        assertMatches(try model.decode(try reference.tensor("clamp_latent")), try reference.tensor("clamp_decoded"),
                      "vae-clamp decode (no post_quant_conv)")
    }

    func testTiledEncodeAndDecodeMatchDiffusers() throws {
        let model = try vae()
        let reference = try SafetensorsFile(path: Fixtures.path("vae-tiny-tiled.safetensors"))
        let image = try reference.tensor("tiled_image"), latent = try reference.tensor("tiled_latent")
        for (size, prefix) in [(16, "tiled"), (0, "tiled32")] {
            try model.setTiling(enabled: true, sampleTileSize: size)
            let posterior = try model.encode(image)
            assertMatches(posterior.mean, try reference.tensor(prefix + "_mean"), "\(prefix) mean")
            assertMatches(posterior.logvar, try reference.tensor(prefix + "_logvar"), "\(prefix) logvar")
            assertMatches(try model.decode(latent), try reference.tensor(prefix + "_decoded"), "\(prefix) decode")
        }
        XCTAssertEqual(model.tiling, try VAETiling(sampleTileSize: 32, downscale: 2), "0 means the config's sample_size")
        try model.setTiling(enabled: false)
        XCTAssertNil(model.tiling)
    }

    func testTilingOnlyAboveTheTileSize() throws {
        let model = try vae()
        let reference = try SafetensorsFile(path: Fixtures.path("vae-tiny-encode.safetensors"))
        let image = try reference.tensor("image2")
        let whole = try model.encode(image).mean
        let latent = try model.encodeLatent(image, noise: nil)
        let decoded = try model.decode(latent)
        try model.setTiling(enabled: true, sampleTileSize: 16)  // a 16x16 image, an 8x8 latent: one tile each
        XCTAssertEqual(try model.encode(image).mean.floatArray(), whole.floatArray())
        XCTAssertEqual(try model.decode(latent).floatArray(), decoded.floatArray())
    }

    func testTileGridFollowsDiffusersArithmetic() throws {
        // The SD VAE: tile_sample_min_size 512, tile_latent_min_size 64.
        let tiling = try VAETiling(sampleTileSize: 512, downscale: 8)
        XCTAssertEqual(tiling.latentTileSize, 64)
        let encode = tiling.encodeGrid, decode = tiling.decodeGrid
        XCTAssertEqual([encode.overlap, encode.blendExtent, encode.rowLimit], [384, 16, 48])
        XCTAssertEqual([decode.overlap, decode.blendExtent, decode.rowLimit], [48, 128, 384])
        XCTAssertEqual(encode.starts(1024), [0, 384, 768])
        XCTAssertEqual(decode.starts(128), [0, 48, 96])
        for size in [-32, 20, 48] {
            XCTAssertThrowsError(try VAETiling(sampleTileSize: size, downscale: 8), "tile size \(size)")
        }
    }

    func testTileSizeErrors() throws {
        let model = try vae()
        assertThrows(.invalidArgument, mentioning: "multiple of 8") { try model.setTiling(enabled: true, sampleTileSize: 20) }
        assertThrows(.invalidArgument, mentioning: "-8") { try model.setTiling(enabled: true, sampleTileSize: -8) }
        XCTAssertNil(model.tiling, "a rejected size leaves tiling off")
    }

    func testEncodeInputErrors() throws {
        let model = try vae()
        assertThrows(.shape, mentioning: "multiples of 2") { _ = try model.encode(try Tensor(zeros: [1, 3, 16, 15])) }
        assertThrows(.shape, mentioning: "[batch, 3, height, width]") { _ = try model.encode(try Tensor(zeros: [1, 4, 16, 16])) }
        assertThrows(.shape, mentioning: "[batch, 3, height, width]") { _ = try model.encode(try Tensor(zeros: [3, 16, 16])) }
        var values = [Float](repeating: 0, count: 3 * 4 * 4)
        values[5] = .nan
        assertThrows(.invalidArgument, mentioning: "NaN") { _ = try model.encode(try Tensor(shape: [1, 3, 4, 4], floats: values)) }
        let image = try Tensor(zeros: [1, 3, 4, 4])
        assertThrows(.shape, mentioning: "[1, 4, 2, 2]") { _ = try model.encodeLatent(image, noise: try Tensor(zeros: [1, 4, 2, 3])) }
    }

    func testDecoderOnlyFolderDecodesButCannotEncode() throws {
        let directory = temporaryDirectory("vae-decoder-only")
        let original = try SafetensorsFile(path: Fixtures.path("vae-tiny/diffusion_pytorch_model.safetensors"))
        let kept = try original.names.filter { !$0.hasPrefix("encoder.") && !$0.hasPrefix("quant_conv.") }
            .map { (name: $0, tensor: try original.tensor($0)) }
        try SafetensorsWriter.write(kept, to: directory + "/diffusion_pytorch_model.safetensors")
        let config = try MappedFile(path: Fixtures.path("vae-tiny/config.json"))
        let text = String(decoding: UnsafeRawBufferPointer(start: config.bytes, count: config.byteCount), as: UTF8.self)
        guard let file = fopen(directory + "/config.json", "w") else { throw NodusError.io("cannot write the config") }
        fputs(text, file)
        fclose(file)

        let model = try XCTUnwrap(try ModelLoader.load(path: directory) as? AutoencoderKLModel)
        let reference = try SafetensorsFile(path: Fixtures.path("vae-tiny-decode.safetensors"))
        assertMatches(try model.decode(try reference.tensor("latent")), try reference.tensor("image"), "decoder-only decode")
        assertThrows(.unsupported, mentioning: "no encoder weights") { _ = try model.encode(try Tensor(zeros: [1, 3, 16, 16])) }
        assertThrows(.unsupported, mentioning: "decoder-only") { _ = try model.encodedShape(forImage: [1, 3, 16, 16]) }
    }
}
