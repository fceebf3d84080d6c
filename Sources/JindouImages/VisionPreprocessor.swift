import Foundation

// transformers/models/qwen2_vl/image_processing_pil_qwen2_vl.py (transformers 5.23),
// `Qwen2VLImageProcessorPil._preprocess` for one image:
//   resize   smart_resize to multiples of patch_size·merge_size, PIL bicubic on uint8 RGB;
//   rescale  image.astype(float64) * rescale_factor, then cast to float32
//            (image_transforms.rescale);
//   normalize (image - mean) / std in float32, mean/std cast to float32
//            (image_transforms.normalize);
//   patchify reshape (C, gh/m, m, p, gw/m, m, p) → transpose (1, 4, 2, 5, 0, 3, 6) →
//            broadcast a temporal axis of temporal_patch_size after C →
//            [gh·gw, C·T·p·p]; grid (1, gh, gw).
// Qwen3-VL uses the same processor class.

/// Preprocessing settings from a checkpoint's `preprocessor_config.json`.
public struct VisionPreprocessorConfiguration: Sendable, Equatable {
    public var patchSize = 14
    public var temporalPatchSize = 2
    public var mergeSize = 2
    /// `size.shortest_edge` (or `min_pixels`, which wins as in the processor's __init__).
    public var minPixels = 56 * 56
    /// `size.longest_edge` (or `max_pixels`).
    public var maxPixels = 28 * 28 * 1280
    public var imageMean: [Double] = [0.48145466, 0.4578275, 0.40821073]  // OPENAI_CLIP_MEAN
    public var imageStd: [Double] = [0.26862954, 0.26130258, 0.27577711]  // OPENAI_CLIP_STD
    public var rescaleFactor = 1.0 / 255.0
    public var doResize = true
    public var doRescale = true
    public var doNormalize = true
    public var doConvertRGB = true

    /// The processor class's defaults (Qwen2-VL's), as transformers fills in missing keys.
    public init() {}

    /// Reads `preprocessor_config.json` (a file, or a checkpoint directory holding one).
    public init(contentsOf path: String) throws(VisionPreprocessingError) {
        let (data, file) = try ConfigurationFields.read(path)
        try self.init(json: data, source: file)
    }

    /// Parses the JSON text of a `preprocessor_config.json`; `source` names it in errors.
    public init(json data: Data, source: String = "preprocessor_config.json") throws(VisionPreprocessingError) {
        let fields = try ConfigurationFields(json: data, source: source)
        self.init()
        patchSize = try fields.positiveInteger("patch_size") ?? patchSize
        temporalPatchSize = try fields.positiveInteger("temporal_patch_size") ?? temporalPatchSize
        mergeSize = try fields.positiveInteger("merge_size") ?? mergeSize
        if let size = fields.value("size") {
            guard case .object(let size) = size else {
                throw .badConfigurationField(path: source, field: "size", expected: "an object with shortest_edge and longest_edge")
            }
            let sizeFields = ConfigurationFields(object: size, source: source, prefix: "size.")
            guard let shortest = try sizeFields.positiveInteger("shortest_edge"),
                  let longest = try sizeFields.positiveInteger("longest_edge") else {
                throw .badConfigurationField(path: source, field: "size", expected: "both shortest_edge and longest_edge (pixel counts)")
            }
            minPixels = shortest
            maxPixels = longest
        }
        minPixels = try fields.positiveInteger("min_pixels") ?? minPixels
        maxPixels = try fields.positiveInteger("max_pixels") ?? maxPixels
        guard minPixels <= maxPixels else {
            throw .badConfigurationField(path: source, field: "size", expected: "min pixels \(minPixels) ≤ max pixels \(maxPixels)")
        }
        imageMean = try fields.perChannel("image_mean") ?? imageMean
        imageStd = try fields.perChannel("image_std") ?? imageStd
        guard imageStd.allSatisfy({ $0 != 0 }) else {
            throw .badConfigurationField(path: source, field: "image_std", expected: "non-zero values")
        }
        rescaleFactor = try fields.number("rescale_factor") ?? rescaleFactor
        doResize = try fields.bool("do_resize") ?? doResize
        doRescale = try fields.bool("do_rescale") ?? doRescale
        doNormalize = try fields.bool("do_normalize") ?? doNormalize
        doConvertRGB = try fields.bool("do_convert_rgb") ?? doConvertRGB
        if let resample = try fields.integer("resample"), resample != 3 {
            throw .badConfigurationField(path: source, field: "resample", expected: "3 (bicubic, the only filter implemented), got \(resample)")
        }
    }
}

/// The model input for one image: what the processor returns as `pixel_values` (rows of
/// one patch each) and `image_grid_thw`.
public struct VisionInput: Sendable {
    /// Row-major [patchCount, patchDimension] float32.
    public let pixelValues: [Float]
    public let patchCount: Int
    /// channels · temporal_patch_size · patch_size².
    public let patchDimension: Int
    /// (t, h, w) in patches; t is 1 for a still image.
    public let grid: (temporal: Int, height: Int, width: Int)
    /// The size the image was resized to.
    public let resizedWidth: Int
    public let resizedHeight: Int
}

/// Qwen2-VL/Qwen3-VL image preprocessing, equal to `Qwen2VLImageProcessorPil` within
/// float32 round-off (in practice bit for bit).
public struct VisionPreprocessor: Sendable {
    public let configuration: VisionPreprocessorConfiguration
    public let decoder: ImageDecoder

    public init(configuration: VisionPreprocessorConfiguration, decoder: ImageDecoder = ImageDecoder()) {
        self.configuration = configuration
        self.decoder = decoder
    }

    /// Decodes the file at `path` and preprocesses it.
    public func preprocess(contentsOf path: String) throws -> VisionInput {
        try preprocess(decoder.decode(contentsOf: path), source: path)
    }

    /// Preprocesses a decoded file; with `do_convert_rgb` false only files PIL opens as
    /// plain "RGB" are accepted (others would reach the processor with 1, 2 or 4 channels).
    public func preprocess(_ decoded: DecodedImage, source: String = "<memory>") throws(VisionPreprocessingError) -> VisionInput {
        if !configuration.doConvertRGB && (decoded.pillowMode != "RGB" || decoded.compositedOnWhite) {
            throw .needsRGBConversion(source: source, pillowMode: decoded.pillowMode)
        }
        return try preprocess(decoded.image)
    }

    /// Resizes (smart_resize + bicubic), rescales, normalises and patchifies `image`.
    public func preprocess(_ image: RGBImage) throws(VisionPreprocessingError) -> VisionInput {
        let c = configuration
        let factor = c.patchSize * c.mergeSize
        var resized = image
        if c.doResize {
            let target = try smartResize(height: image.height, width: image.width, factor: factor, minPixels: c.minPixels, maxPixels: c.maxPixels)
            resized = bicubicResize(image, width: target.width, height: target.height)
        }
        guard resized.height % factor == 0, resized.width % factor == 0 else {
            throw .notDivisible(height: resized.height, width: resized.width, factor: factor)
        }
        let values = valueTable()
        let channels = 3, p = c.patchSize, m = c.mergeSize, t = c.temporalPatchSize
        let gridHeight = resized.height / p, gridWidth = resized.width / p
        let patchDimension = channels * t * p * p
        let patchCount = gridHeight * gridWidth
        let pixelValues = [Float](unsafeUninitializedCapacity: patchCount * patchDimension) { out, initialised in
            resized.pixels.withUnsafeBufferPointer { pixels in
                values.withUnsafeBufferPointer { values in
                    var row = 0
                    for blockRow in 0..<(gridHeight / m) {
                        for blockColumn in 0..<(gridWidth / m) {
                            for mergeRow in 0..<m {
                                for mergeColumn in 0..<m {
                                    let top = (blockRow * m + mergeRow) * p
                                    let left = (blockColumn * m + mergeColumn) * p
                                    var column = row * patchDimension
                                    for channel in 0..<channels {
                                        let table = values.baseAddress! + channel * 256
                                        for _ in 0..<t {
                                            for y in 0..<p {
                                                let source = pixels.baseAddress! + ((top + y) * resized.width + left) * channels + channel
                                                for x in 0..<p {
                                                    out[column] = table[Int(source[x * channels])]
                                                    column += 1
                                                }
                                            }
                                        }
                                    }
                                    row += 1
                                }
                            }
                        }
                    }
                }
            }
            initialised = patchCount * patchDimension
        }
        return VisionInput(
            pixelValues: pixelValues, patchCount: patchCount, patchDimension: patchDimension,
            grid: (1, gridHeight, gridWidth), resizedWidth: resized.width, resizedHeight: resized.height
        )
    }

    /// The float each byte value of each channel becomes after rescale and normalise:
    /// both are per-value maps, so a 3 × 256 table is exact and keeps the patch loop a copy.
    private func valueTable() -> [Float] {
        let c = configuration
        var table = [Float](repeating: 0, count: 3 * 256)
        for channel in 0..<3 {
            let mean = Float(c.imageMean[channel]), std = Float(c.imageStd[channel])
            for byte in 0..<256 {
                // rescale: float64 multiply, then float32; normalize: float32.
                var value = c.doRescale ? Float(Double(byte) * c.rescaleFactor) : Float(byte)
                if c.doNormalize { value = (value - mean) / std }
                table[channel * 256 + byte] = value
            }
        }
        return table
    }
}

/// Why an image could not be preprocessed or a configuration not read.
public enum VisionPreprocessingError: Error, Equatable, CustomStringConvertible {
    case missingConfiguration(path: String)
    case unreadableConfiguration(path: String, reason: String)
    case badConfigurationField(path: String, field: String, expected: String)
    case zeroSized(height: Int, width: Int)
    case aspectRatioTooLarge(height: Int, width: Int, ratio: Double)
    case notDivisible(height: Int, width: Int, factor: Int)
    case needsRGBConversion(source: String, pillowMode: String)

    public var description: String {
        switch self {
        case .missingConfiguration(let path): "\(path): preprocessor configuration not found"
        case .unreadableConfiguration(let path, let reason): "\(path): cannot read preprocessor configuration: \(reason)"
        case .badConfigurationField(let path, let field, let expected): "\(path): field \(field): expected \(expected)"
        case .zeroSized(let height, let width): "image has zero size (\(width)×\(height))"
        case .aspectRatioTooLarge(let height, let width, let ratio):
            "image \(width)×\(height) has aspect ratio \(ratio); Qwen2-VL's smart_resize needs it at most 200"
        case .notDivisible(let height, let width, let factor):
            "image \(width)×\(height) is not a multiple of patch_size × merge_size = \(factor) (do_resize is false)"
        case .needsRGBConversion(let source, let mode):
            "\(source): PIL opens this file as mode \(mode), not RGB, and do_convert_rgb is false"
        }
    }
}

/// A JSON value, decoded strictly (JSONDecoder never turns `true` into 1 or back).
enum JSONValue: Decodable {
    case null, bool(Bool), number(Double), string(String), array([JSONValue]), object([String: JSONValue])

    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() { self = .null }
        else if let value = try? container.decode(Bool.self) { self = .bool(value) }
        else if let value = try? container.decode(Double.self) { self = .number(value) }
        else if let value = try? container.decode(String.self) { self = .string(value) }
        else if let value = try? container.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }
}

/// Typed access to a JSON object's fields, naming the field in every error.
struct ConfigurationFields {
    let object: [String: JSONValue]
    let source: String
    var prefix = ""

    init(object: [String: JSONValue], source: String, prefix: String = "") {
        self.object = object
        self.source = source
        self.prefix = prefix
    }

    /// The fields of a JSON object's text; `source` names it in errors.
    init(json data: Data, source: String) throws(VisionPreprocessingError) {
        let parsed: JSONValue
        do { parsed = try JSONDecoder().decode(JSONValue.self, from: data) } catch {
            throw .unreadableConfiguration(path: source, reason: "invalid JSON (\(error))")
        }
        guard case .object(let object) = parsed else {
            throw .unreadableConfiguration(path: source, reason: "not a JSON object")
        }
        self.init(object: object, source: source)
    }

    /// The bytes of `preprocessor_config.json` at `path` (a file, or a directory holding
    /// one) and the file's path.
    static func read(_ path: String) throws(VisionPreprocessingError) -> (Data, String) {
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
        let file = isDirectory.boolValue ? (path as NSString).appendingPathComponent("preprocessor_config.json") : path
        guard exists, FileManager.default.fileExists(atPath: file) else { throw .missingConfiguration(path: file) }
        do { return (try Data(contentsOf: URL(fileURLWithPath: file)), file) } catch {
            throw .unreadableConfiguration(path: file, reason: error.localizedDescription)
        }
    }

    func value(_ key: String) -> JSONValue? {
        guard let value = object[key] else { return nil }
        if case .null = value { return nil }
        return value
    }

    private func fail(_ key: String, _ expected: String) -> VisionPreprocessingError {
        .badConfigurationField(path: source, field: prefix + key, expected: expected)
    }

    func number(_ key: String) throws(VisionPreprocessingError) -> Double? {
        guard let value = value(key) else { return nil }
        guard case .number(let number) = value, number.isFinite else { throw fail(key, "a number") }
        return number
    }

    func integer(_ key: String) throws(VisionPreprocessingError) -> Int? {
        guard let number = try number(key) else { return nil }
        guard number == number.rounded(), abs(number) < 1e15 else { throw fail(key, "an integer, got \(number)") }
        return Int(number)
    }

    func positiveInteger(_ key: String) throws(VisionPreprocessingError) -> Int? {
        guard let integer = try integer(key) else { return nil }
        guard integer > 0 else { throw fail(key, "a positive integer, got \(integer)") }
        return integer
    }

    func bool(_ key: String) throws(VisionPreprocessingError) -> Bool? {
        guard let value = value(key) else { return nil }
        guard case .bool(let flag) = value else { throw fail(key, "true or false") }
        return flag
    }

    /// A number (used for all three channels, as transformers does) or a list of three.
    func perChannel(_ key: String) throws(VisionPreprocessingError) -> [Double]? {
        guard let value = value(key) else { return nil }
        if case .number(let number) = value { return Array(repeating: number, count: 3) }
        guard case .array(let list) = value, list.count == 3 else { throw fail(key, "a number or a list of 3 numbers") }
        return try list.map { element throws(VisionPreprocessingError) in
            guard case .number(let number) = element else { throw fail(key, "a number or a list of 3 numbers") }
            return number
        }
    }
}
