import Foundation
import JindouImages
import JindouModel
import JindouTestSupport

/// `Tests/Fixtures/images/expected.json` + `.safetensors`, written by
/// `tools/fixture_images.py` (PIL 13 and transformers' Qwen2VLImageProcessorPil).
struct ImageGoldens: Decodable {
    struct Image: Decodable, CustomStringConvertible, Sendable {
        let name: String
        let file: String
        let pilMode: String
        let hasTransparency: Bool
        let width: Int
        let height: Int
        let resizedWidth: Int
        let resizedHeight: Int

        enum CodingKeys: String, CodingKey {
            case name, file, width, height
            case pilMode = "pil_mode"
            case hasTransparency = "has_transparency"
            case resizedWidth = "resized_width"
            case resizedHeight = "resized_height"
        }

        var description: String { file }
        var path: String { ImageGoldens.directory + "/" + file }
    }

    struct SmartResizeCase: Decodable, CustomStringConvertible, Sendable {
        let height: Int
        let width: Int
        let factor: Int
        let minPixels: Int
        let maxPixels: Int
        let resizedHeight: Int?
        let resizedWidth: Int?
        let error: String?

        enum CodingKeys: String, CodingKey {
            case height, width, factor, error
            case minPixels = "min_pixels"
            case maxPixels = "max_pixels"
            case resizedHeight = "resized_height"
            case resizedWidth = "resized_width"
        }

        var description: String { "\(height)x\(width)/\(factor) [\(minPixels), \(maxPixels)]" }
    }

    let patchSize: Int
    let mergeSize: Int
    let temporalPatchSize: Int
    let minPixels: Int
    let maxPixels: Int
    let images: [Image]
    let smartResize: [SmartResizeCase]

    enum CodingKeys: String, CodingKey {
        case images
        case patchSize = "patch_size"
        case mergeSize = "merge_size"
        case temporalPatchSize = "temporal_patch_size"
        case minPixels = "min_pixels"
        case maxPixels = "max_pixels"
        case smartResize = "smart_resize"
    }

    static let directory = Fixtures.path("images")

    static let shared: ImageGoldens = {
        let url = URL(fileURLWithPath: directory + "/expected.json")
        // A missing fixture fails the tests that use it, with the path in the message.
        guard let data = try? Data(contentsOf: url), let goldens = try? JSONDecoder().decode(ImageGoldens.self, from: data) else {
            fatalError("cannot read \(url.path); run tools/fixture_images.py")
        }
        return goldens
    }()

    static func tensors() throws -> SafetensorsFile { try SafetensorsFile(path: directory + "/expected.safetensors") }
}

extension TensorView {
    var bytes: [UInt8] { Array(UnsafeRawBufferPointer(start: pointer, count: byteCount)) }

    var int64s: [Int64] {
        (0..<elementCount).map { pointer.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self) }
    }
}
