import XCTest
import NodusCore
import NodusFormats
import NodusModels

/// Forward passes against diffusers references (`tests/reference/make_model_fixtures.py`).
/// The Python suite checks the same through the C ABI; these keep the Swift
/// layers honest on their own.
final class ModelParityTests: XCTestCase {
    func testDiTForwardMatchesDiffusers() throws {
        let model = try ModelLoader.load(path: Fixtures.path("dit-tiny"))
        let reference = try SafetensorsFile(path: Fixtures.path("dit-tiny-forward.safetensors"))
        for (timestepName, outputName) in [("timestep", "output"), ("timestep_float", "output_float")] {
            let output = try model.forward([
                "sample": reference.tensor("sample"),
                "timestep": reference.tensor(timestepName),
                "class_labels": reference.tensor("class_labels"),
            ])
            XCTAssertEqual(output.shape, [2, 8, 8, 8])
            let error = relativeError(output, try reference.tensor(outputName))
            XCTAssertLessThan(error, 1e-4, "DiT forward (\(timestepName)) relative error \(error)")
        }
    }

    func testConditionedFloat16DiTMatchesDiffusers() throws {
        let model = try ModelLoader.load(path: Fixtures.path("dit-tiny-cond"))
        let reference = try SafetensorsFile(path: Fixtures.path("dit-tiny-forward.safetensors"))
        let output = try model.forward([
            "sample": reference.tensor("cond_sample"),
            "timestep": reference.tensor("cond_timestep"),
            "class_labels": reference.tensor("cond_class_labels"),
        ])
        let error = relativeError(output, try reference.tensor("cond_output"))
        XCTAssertLessThan(error, 1e-4, "conditioned DiT forward relative error \(error)")
    }

    func testVAEDecodeMatchesDiffusers() throws {
        let model = try ModelLoader.load(path: Fixtures.path("vae-tiny"))
        let decoder = try XCTUnwrap(model as? LatentDecoder)
        let reference = try SafetensorsFile(path: Fixtures.path("vae-tiny-decode.safetensors"))
        for (latentName, imageName) in [("latent", "image"), ("latent2", "image2")] {
            let image = try decoder.decode(try reference.tensor(latentName))
            let error = relativeError(image, try reference.tensor(imageName))
            XCTAssertLessThan(error, 1e-4, "VAE decode (\(latentName)) relative error \(error)")
        }
    }
}
