import Foundation
import Testing
import JindouImages
import JindouTestSupport

@Suite("smart_resize equals transformers' Python")
struct SmartResizeTests {
    @Test("the recorded table, including round-half-to-even ties and the aspect-ratio error", arguments: ImageGoldens.shared.smartResize)
    func table(entry: ImageGoldens.SmartResizeCase) {
        let result = Result { () throws(VisionPreprocessingError) in
            try smartResize(height: entry.height, width: entry.width, factor: entry.factor, minPixels: entry.minPixels, maxPixels: entry.maxPixels)
        }
        switch (result, entry.error) {
        case (.success(let size), nil):
            #expect(size.height == entry.resizedHeight && size.width == entry.resizedWidth)
        case (.failure(.aspectRatioTooLarge), let message?):
            #expect(message.contains("aspect ratio"))
        case (.success(let size), let message?):
            Issue.record("Python raised \(message) but got \(size)")
        case (.failure(let error), _):
            Issue.record("unexpected \(error)")
        }
    }
}

@Suite("Bicubic resize is bit-exact with Pillow")
struct BicubicResizeTests {
    @Test("resized pixels equal Image.resize(size, BICUBIC)", arguments: ImageGoldens.shared.images)
    func resized(image: ImageGoldens.Image) throws {
        let tensors = try ImageGoldens.tensors()
        let source = RGBImage(width: image.width, height: image.height, pixels: try tensors.tensor("\(image.name).decoded").bytes)
        let resized = bicubicResize(source, width: image.resizedWidth, height: image.resizedHeight)
        let expected = try tensors.tensor("\(image.name).resized")
        #expect(expected.shape == [image.resizedHeight, image.resizedWidth, 3])
        let differing = zip(resized.pixels, expected.bytes).filter { $0 != $1 }.count
        #expect(resized.pixels.count == expected.byteCount)
        #expect(differing == 0, "\(differing) of \(expected.byteCount) bytes differ from Pillow")
    }

    @Test("the same size is returned unchanged")
    func identity() {
        let image = RGBImage(width: 3, height: 2, pixels: (0..<18).map { UInt8($0 * 13) })
        #expect(bicubicResize(image, width: 3, height: 2) == image)
    }
}

@Suite("VisionPreprocessor equals Qwen2VLImageProcessorPil")
struct VisionPreprocessorTests {
    static let configurationPath = ImageGoldens.directory + "/preprocessor_config.json"

    @Test("preprocessor_config.json as transformers saved it")
    func configuration() throws {
        let c = try VisionPreprocessorConfiguration(contentsOf: ImageGoldens.directory)
        let goldens = ImageGoldens.shared
        #expect(c.patchSize == goldens.patchSize && c.mergeSize == goldens.mergeSize && c.temporalPatchSize == goldens.temporalPatchSize)
        #expect(c.minPixels == goldens.minPixels && c.maxPixels == goldens.maxPixels)
        #expect(c.imageMean == [0.5, 0.5, 0.5] && c.imageStd == [0.5, 0.5, 0.5])
        #expect(c.doResize && c.doRescale && c.doNormalize && c.doConvertRGB)
    }

    @Test("pixel_values within 1e-5 and image_grid_thw identical", arguments: ImageGoldens.shared.images)
    func pixelValues(image: ImageGoldens.Image) throws {
        let preprocessor = VisionPreprocessor(configuration: try VisionPreprocessorConfiguration(contentsOf: Self.configurationPath))
        let input = try preprocessor.preprocess(contentsOf: image.path)
        let tensors = try ImageGoldens.tensors()
        let expected = try tensors.tensor("\(image.name).pixel_values")
        let grid = try tensors.tensor("\(image.name).grid_thw").int64s
        #expect([input.grid.temporal, input.grid.height, input.grid.width].map(Int64.init) == grid)
        #expect([input.patchCount, input.patchDimension] == expected.shape)
        #expect((input.resizedWidth, input.resizedHeight) == (image.resizedWidth, image.resizedHeight))
        #expect(maxAbsDifference(input.pixelValues, try expected.floats()) <= 1e-5)
    }

    @Test("min_pixels/max_pixels override size, as the processor's __init__ does")
    func legacyPixelKeys() throws {
        let json = #"{"size": {"shortest_edge": 10, "longest_edge": 20}, "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14}"#
        let c = try VisionPreprocessorConfiguration(json: Data(json.utf8))
        #expect((c.minPixels, c.maxPixels, c.patchSize, c.mergeSize) == (3136, 12845056, 14, 2))
        #expect(c.imageMean == [0.48145466, 0.4578275, 0.40821073])
    }

    @Test("a scalar mean/std applies to every channel")
    func scalarMean() throws {
        let c = try VisionPreprocessorConfiguration(json: Data(#"{"image_mean": 0.5, "image_std": 0.25}"#.utf8))
        #expect(c.imageMean == [0.5, 0.5, 0.5] && c.imageStd == [0.25, 0.25, 0.25])
    }

    @Test("bad configurations name the file and field", arguments: [
        (#"{"patch_size": "16"}"#, "patch_size"),
        (#"{"patch_size": 0}"#, "patch_size"),
        (#"{"merge_size": 2.5}"#, "merge_size"),
        (#"{"image_mean": [0.5, 0.5]}"#, "image_mean"),
        (#"{"image_std": [0.5, 0, 0.5]}"#, "image_std"),
        (#"{"do_resize": 1}"#, "do_resize"),
        (#"{"size": {"shortest_edge": 100}}"#, "size"),
        (#"{"size": {"shortest_edge": 100, "longest_edge": -1}}"#, "size.longest_edge"),
        (#"{"min_pixels": 5000, "max_pixels": 100}"#, "size"),
        (#"{"resample": 2}"#, "resample"),
    ])
    func badFields(json: String, field: String) {
        #expect {
            _ = try VisionPreprocessorConfiguration(json: Data(json.utf8), source: "ckpt/preprocessor_config.json")
        } throws: { error in
            guard case .badConfigurationField(let path, let named, _) = error as? VisionPreprocessingError else { return false }
            return path == "ckpt/preprocessor_config.json" && named == field
        }
    }

    @Test("a missing or unparsable configuration")
    func missingOrInvalid() {
        #expect(throws: VisionPreprocessingError.missingConfiguration(path: "/nonexistent/preprocessor_config.json")) {
            try VisionPreprocessorConfiguration(contentsOf: "/nonexistent/preprocessor_config.json")
        }
        for text in ["{", "[1, 2]", ""] {
            #expect {
                _ = try VisionPreprocessorConfiguration(json: Data(text.utf8), source: "x.json")
            } throws: { error in
                guard case .unreadableConfiguration(let path, _) = error as? VisionPreprocessingError else { return false }
                return path == "x.json"
            }
        }
    }

    @Test("an aspect ratio above 200 is refused, as smart_resize does")
    func aspectRatio() {
        let preprocessor = VisionPreprocessor(configuration: VisionPreprocessorConfiguration())
        let image = RGBImage(width: 402, height: 2, pixels: [UInt8](repeating: 7, count: 402 * 2 * 3))
        #expect {
            _ = try preprocessor.preprocess(image)
        } throws: { error in
            guard case .aspectRatioTooLarge(2, 402, _) = error as? VisionPreprocessingError else { return false }
            return true
        }
    }

    @Test("without do_resize the size must be a multiple of patch × merge")
    func notDivisible() throws {
        var c = VisionPreprocessorConfiguration()
        c.doResize = false
        let preprocessor = VisionPreprocessor(configuration: c)
        let image = RGBImage(width: 57, height: 56, pixels: [UInt8](repeating: 0, count: 57 * 56 * 3))
        #expect(throws: VisionPreprocessingError.notDivisible(height: 56, width: 57, factor: 28)) { try preprocessor.preprocess(image) }
        let fits = RGBImage(width: 56, height: 28, pixels: [UInt8](repeating: 255, count: 56 * 28 * 3))
        let input = try preprocessor.preprocess(fits)
        #expect(input.grid == (1, 2, 4) && input.patchCount == 8 && input.patchDimension == 3 * 2 * 14 * 14)
    }

    @Test("without do_convert_rgb only plain RGB files are accepted")
    func conversionDisabled() throws {
        var c = try VisionPreprocessorConfiguration(contentsOf: Self.configurationPath)
        c.doConvertRGB = false
        let preprocessor = VisionPreprocessor(configuration: c)
        _ = try preprocessor.preprocess(contentsOf: ImageGoldens.directory + "/photo.jpg")
        #expect(throws: VisionPreprocessingError.needsRGBConversion(source: ImageGoldens.directory + "/rgba.png", pillowMode: "RGBA")) {
            try preprocessor.preprocess(contentsOf: ImageGoldens.directory + "/rgba.png")
        }
    }
}
