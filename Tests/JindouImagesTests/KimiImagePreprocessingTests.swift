import Foundation
import Testing
import JindouImages
import JindouModel
import JindouTestSupport

/// `Tests/Fixtures/images/torch-resize.json` + `.safetensors`, written by
/// `tools/fixture_kimi_images.py` (torch 2.15, torchvision 0.29 and transformers'
/// Kimi_K25ImageProcessor).
struct KimiImageGoldens: Decodable {
    struct Resize: Decodable, CustomStringConvertible, Sendable {
        let index: Int
        let height: Int
        let width: Int
        let resizedHeight: Int
        let resizedWidth: Int

        enum CodingKeys: String, CodingKey {
            case index, height, width
            case resizedHeight = "resized_height"
            case resizedWidth = "resized_width"
        }

        var description: String { "\(height)x\(width) → \(resizedHeight)x\(resizedWidth)" }
    }

    struct Navit: Decodable, CustomStringConvertible, Sendable {
        let height: Int
        let width: Int
        let patchSize: Int
        let mergeSize: Int
        let maxPatches: Int
        let maxSizePerSide: Int
        let resizedHeight: Int
        let resizedWidth: Int
        let paddedHeight: Int
        let paddedWidth: Int

        enum CodingKeys: String, CodingKey {
            case height, width
            case patchSize = "patch_size"
            case mergeSize = "merge_size"
            case maxPatches = "max_patches"
            case maxSizePerSide = "max_size_per_side"
            case resizedHeight = "resized_height"
            case resizedWidth = "resized_width"
            case paddedHeight = "padded_height"
            case paddedWidth = "padded_width"
        }

        var description: String { "\(height)x\(width) p\(patchSize) m\(mergeSize) \(maxPatches) patches, side \(maxSizePerSide)" }
    }

    struct Setting: Decodable, Sendable {
        let name: String
        let maxPatches: Int
        let maxSizePerSide: Int
        /// The text of the preprocessor_config.json transformers saved for this setting.
        let preprocessorConfig: String

        enum CodingKeys: String, CodingKey {
            case name
            case maxPatches = "max_patches"
            case maxSizePerSide = "max_size_per_side"
            case preprocessorConfig = "preprocessor_config"
        }
    }

    struct Processed: Decodable, CustomStringConvertible, Sendable {
        let key: String
        let setting: String
        let file: String
        let resizedHeight: Int
        let resizedWidth: Int
        let paddedHeight: Int
        let paddedWidth: Int

        enum CodingKeys: String, CodingKey {
            case key, setting, file
            case resizedHeight = "resized_height"
            case resizedWidth = "resized_width"
            case paddedHeight = "padded_height"
            case paddedWidth = "padded_width"
        }

        var description: String { key }
        var path: String { ImageGoldens.directory + "/" + file }
    }

    let resize: [Resize]
    let navit: [Navit]
    let settings: [Setting]
    let processed: [Processed]

    static let shared: KimiImageGoldens = {
        let url = URL(fileURLWithPath: ImageGoldens.directory + "/torch-resize.json")
        // A missing fixture fails the tests that use it, with the path in the message.
        guard let data = try? Data(contentsOf: url), let goldens = try? JSONDecoder().decode(KimiImageGoldens.self, from: data) else {
            fatalError("cannot read \(url.path); run tools/fixture_kimi_images.py")
        }
        return goldens
    }()

    static func tensors() throws -> SafetensorsFile { try SafetensorsFile(path: ImageGoldens.directory + "/torch-resize.safetensors") }

    static func configuration(_ setting: String) throws -> KimiImagePreprocessorConfiguration {
        let saved = try #require(shared.settings.first { $0.name == setting })
        return try KimiImagePreprocessorConfiguration(json: Data(saved.preprocessorConfig.utf8), source: "\(setting)/preprocessor_config.json")
    }
}

@Suite("KimiImage torchBicubicResize is bit-exact with torchvision")
struct KimiImageResizeTests {
    @Test("resized bytes equal resize(uint8, BICUBIC, antialias=True)", arguments: KimiImageGoldens.shared.resize)
    func resized(entry: KimiImageGoldens.Resize) throws {
        let tensors = try KimiImageGoldens.tensors()
        let input = try tensors.tensor("resize.\(entry.index).input")
        let expected = try tensors.tensor("resize.\(entry.index).output")
        #expect(input.shape == [entry.height, entry.width, 3] && expected.shape == [entry.resizedHeight, entry.resizedWidth, 3])
        let source = RGBImage(width: entry.width, height: entry.height, pixels: input.bytes)
        let resized = torchBicubicResize(source, width: entry.resizedWidth, height: entry.resizedHeight)
        #expect((resized.width, resized.height) == (entry.resizedWidth, entry.resizedHeight))
        #expect(resized.pixels.count == expected.byteCount)
        let differing = zip(resized.pixels, expected.bytes).filter { $0 != $1 }.count
        #expect(differing == 0, "\(differing) of \(expected.byteCount) bytes differ from torchvision")
    }

    @Test("the same size is returned unchanged")
    func identity() {
        let image = RGBImage(width: 3, height: 2, pixels: (0..<18).map { UInt8($0 * 13) })
        #expect(torchBicubicResize(image, width: 3, height: 2) == image)
    }
}

@Suite("KimiImage navitResize equals transformers' navit_resize")
struct KimiImageNavitResizeTests {
    @Test("the recorded table: no scaling, the patch budget, the side limit, sub-patch sides", arguments: KimiImageGoldens.shared.navit)
    func table(entry: KimiImageGoldens.Navit) {
        let size = KimiImagePreprocessor.navitResize(
            height: entry.height, width: entry.width, patchSize: entry.patchSize, mergeSize: entry.mergeSize,
            maxPatches: entry.maxPatches, maxSizePerSide: entry.maxSizePerSide)
        #expect(size.resized == (entry.resizedHeight, entry.resizedWidth))
        #expect(size.padded == (entry.paddedHeight, entry.paddedWidth))
    }
}

@Suite("KimiImage preprocessing equals Kimi_K25ImageProcessor")
struct KimiImagePreprocessorTests {
    @Test("pixel_values bit for bit and image_grid_thw, from the file through ImageDecoder", arguments: KimiImageGoldens.shared.processed)
    func pixelValues(entry: KimiImageGoldens.Processed) throws {
        let preprocessor = KimiImagePreprocessor(configuration: try KimiImageGoldens.configuration(entry.setting))
        let input = try preprocessor.preprocess(contentsOf: entry.path)
        let tensors = try KimiImageGoldens.tensors()
        let expected = try tensors.tensor("\(entry.key).pixel_values")
        let grid = try tensors.tensor("\(entry.key).grid_thw").int64s
        let p = preprocessor.configuration.patchSize
        #expect([input.grid.temporal, input.grid.height, input.grid.width].map(Int64.init) == grid)
        #expect(expected.shape == [input.patchCount, 3, p, p] && input.patchDimension == 3 * p * p)
        #expect((input.resizedHeight, input.resizedWidth) == (entry.resizedHeight, entry.resizedWidth))
        #expect((input.grid.height * p, input.grid.width * p) == (entry.paddedHeight, entry.paddedWidth))
        let want = try expected.floats()
        #expect(input.pixelValues.count == want.count)
        let differing = zip(input.pixelValues, want).filter { $0.bitPattern != $1.bitPattern }.count
        #expect(differing == 0, "\(differing) of \(want.count) values differ from transformers")
    }

    @Test("both processors serve through ImagePreprocessing")
    func protocolConformance() throws {
        let processors: [any ImagePreprocessing] = [
            KimiImagePreprocessor(configuration: try KimiImageGoldens.configuration("m8-s512")),
            VisionPreprocessor(configuration: try VisionPreprocessorConfiguration(contentsOf: ImageGoldens.directory)),
        ]
        let path = ImageGoldens.directory + "/photo.jpg"
        let grids = try processors.map { processor in
            let input = try processor.preprocess(processor.decoder.decode(contentsOf: path), source: path)
            return [input.grid.height, input.grid.width]
        }
        let kimi = try #require(KimiImageGoldens.shared.processed.first { $0.key == "m8-s512.photo.jpg" })
        #expect(grids[0] == [kimi.paddedHeight / 14, kimi.paddedWidth / 14])
    }

    @Test("without do_resize nothing is resized or padded, and whole patches are required")
    func withoutResize() throws {
        var c = KimiImagePreprocessorConfiguration()
        c.doResize = false
        let preprocessor = KimiImagePreprocessor(configuration: c)
        let ragged = RGBImage(width: 29, height: 14, pixels: [UInt8](repeating: 0, count: 29 * 14 * 3))
        #expect(throws: VisionPreprocessingError.notDivisible(height: 14, width: 29, factor: 14)) { try preprocessor.preprocess(ragged) }
        // 42 × 14 is not a multiple of patch × merge = 28, which patchify does not need.
        let fits = RGBImage(width: 42, height: 14, pixels: [UInt8](repeating: 255, count: 42 * 14 * 3))
        let input = try preprocessor.preprocess(fits)
        #expect(input.grid == (1, 1, 3) && input.patchCount == 3 && input.patchDimension == 3 * 14 * 14)
        #expect(input.pixelValues.allSatisfy { $0 == 1 })
    }

    @Test("without do_convert_rgb only plain RGB files are accepted")
    func conversionDisabled() throws {
        var c = KimiImagePreprocessorConfiguration()
        c.doConvertRGB = false
        let preprocessor = KimiImagePreprocessor(configuration: c)
        _ = try preprocessor.preprocess(contentsOf: ImageGoldens.directory + "/photo.jpg")
        #expect(throws: VisionPreprocessingError.needsRGBConversion(source: ImageGoldens.directory + "/rgba.png", pillowMode: "RGBA")) {
            try preprocessor.preprocess(contentsOf: ImageGoldens.directory + "/rgba.png")
        }
    }
}

@Suite("KimiImage configuration reads what transformers saves")
struct KimiImageConfigurationTests {
    @Test("each setting's preprocessor_config.json", arguments: KimiImageGoldens.shared.settings.map(\.name))
    func saved(setting: String) throws {
        let saved = try #require(KimiImageGoldens.shared.settings.first { $0.name == setting })
        let c = try KimiImageGoldens.configuration(setting)
        var expected = KimiImagePreprocessorConfiguration()
        expected.maxPatches = saved.maxPatches
        expected.maxSizePerSide = saved.maxSizePerSide
        #expect(c == expected)
    }

    @Test("the class defaults fill in missing keys")
    func defaults() throws {
        let c = try KimiImagePreprocessorConfiguration(json: Data("{}".utf8))
        #expect(c == KimiImagePreprocessorConfiguration())
        #expect((c.patchSize, c.mergeSize, c.maxPatches, c.maxSizePerSide) == (14, 2, 16384, 512))
        #expect(c.imageMean == [0.5, 0.5, 0.5] && c.imageStd == [0.5, 0.5, 0.5] && c.rescaleFactor == 1.0 / 255.0)
        #expect(c.doResize && c.doRescale && c.doNormalize && c.doConvertRGB)
    }

    @Test("a checkpoint directory holding preprocessor_config.json")
    func directory() throws {
        let directory = Scratch.url.appendingPathComponent("kimi-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let saved = try #require(KimiImageGoldens.shared.settings.first { $0.name == "m64-s2" })
        try Data(saved.preprocessorConfig.utf8).write(to: directory.appendingPathComponent("preprocessor_config.json"))
        let c = try KimiImagePreprocessorConfiguration(contentsOf: directory.path)
        #expect((c.maxPatches, c.maxSizePerSide) == (64, 2))
        #expect(throws: VisionPreprocessingError.missingConfiguration(path: directory.path + "/missing/preprocessor_config.json")) {
            try KimiImagePreprocessorConfiguration(contentsOf: directory.path + "/missing/preprocessor_config.json")
        }
    }

    @Test("bad configurations name the file and field", arguments: [
        (#"{"patch_size": "14"}"#, "patch_size"),
        (#"{"patch_size": 0}"#, "patch_size"),
        (#"{"merge_size": 2.5}"#, "merge_size"),
        (#"{"max_patches": -1}"#, "max_patches"),
        (#"{"size": {"max_height": 512, "max_width": 256}}"#, "size"),
        (#"{"size": {"max_height": 512}}"#, "size"),
        (#"{"size": {"shortest_edge": 3136, "longest_edge": 12845056}}"#, "size"),
        (#"{"size": {"max_height": 0, "max_width": 0}}"#, "size.max_height"),
        (#"{"size": 512}"#, "size"),
        (#"{"image_mean": [0.5, 0.5]}"#, "image_mean"),
        (#"{"image_std": [0.5, 0, 0.5]}"#, "image_std"),
        (#"{"rescale_factor": 0}"#, "rescale_factor"),
        (#"{"do_resize": 1}"#, "do_resize"),
        (#"{"resample": 2}"#, "resample"),
    ])
    func badFields(json: String, field: String) {
        #expect {
            _ = try KimiImagePreprocessorConfiguration(json: Data(json.utf8), source: "ckpt/preprocessor_config.json")
        } throws: { error in
            guard case .badConfigurationField(let path, let named, _) = error as? VisionPreprocessingError else { return false }
            return path == "ckpt/preprocessor_config.json" && named == field
        }
    }
}
