import Foundation

// transformers/models/kimi_k25/image_processing_kimi_k25.py (transformers 5.25),
// `Kimi_K25ImageProcessor._preprocess` (a TorchvisionBackend processor) for one image:
//   resize    `navit_resize` picks the size (never larger), then torchvision's uint8
//             antialiased bicubic (TorchvisionBackend.resize → TorchBicubicResize.swift);
//   pad       zeros at the bottom and right up to multiples of patch_size·merge_size
//             (TorchvisionBackend.pad, before normalisation, so padding is byte 0);
//   rescale + normalize fused (TorchvisionBackend._fuse_mean_std_and_rescale_factor):
//             mean' = float32(mean)·float32(1/rescale_factor), std' likewise, then
//             (float32(byte) − mean') / std' in float32;
//   patchify  reshape (C, gh, p, gw, p) → permute (gh, gw, C, p, p): patches in raster order,
//             each channel-major; grid (1, gh, gw).
// Both steps of resize and pad run only with do_resize, as in `_preprocess`.

/// Something that turns a decoded image into a vision tower's input: the Qwen2-VL and the
/// Kimi-K2.5 processors.
public protocol ImagePreprocessing: Sendable {
    var decoder: ImageDecoder { get }
    /// Preprocesses a decoded file; `source` names it in errors.
    func preprocess(_ decoded: DecodedImage, source: String) throws -> VisionInput
}

extension VisionPreprocessor: ImagePreprocessing {}

/// Kimi-K2.5's preprocessing settings from a checkpoint's `preprocessor_config.json`.
public struct KimiImagePreprocessorConfiguration: Sendable, Equatable {
    public var patchSize = 14
    public var mergeSize = 2
    /// Largest patch count an image is resized to (`max_patches`).
    public var maxPatches = 16384
    /// Largest side in patches (`size.max_height`, which must equal `size.max_width`).
    public var maxSizePerSide = 512
    public var imageMean: [Double] = [0.5, 0.5, 0.5]  // IMAGENET_STANDARD_MEAN
    public var imageStd: [Double] = [0.5, 0.5, 0.5]  // IMAGENET_STANDARD_STD
    public var rescaleFactor = 1.0 / 255.0
    public var doResize = true
    public var doRescale = true
    public var doNormalize = true
    public var doConvertRGB = true

    /// The processor class's defaults, as transformers fills in missing keys.
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
        mergeSize = try fields.positiveInteger("merge_size") ?? mergeSize
        maxPatches = try fields.positiveInteger("max_patches") ?? maxPatches
        if let size = fields.value("size") {
            // _validate_preprocess_kwargs: both keys, equal.
            guard case .object(let size) = size else {
                throw .badConfigurationField(path: source, field: "size", expected: "an object with max_height and max_width")
            }
            let sizeFields = ConfigurationFields(object: size, source: source, prefix: "size.")
            guard let height = try sizeFields.positiveInteger("max_height"),
                  let width = try sizeFields.positiveInteger("max_width") else {
                throw .badConfigurationField(path: source, field: "size", expected: "both max_height and max_width (patches per side)")
            }
            guard height == width else {
                throw .badConfigurationField(path: source, field: "size", expected: "max_height equal to max_width, got \(height) and \(width)")
            }
            maxSizePerSide = height
        }
        imageMean = try fields.perChannel("image_mean") ?? imageMean
        imageStd = try fields.perChannel("image_std") ?? imageStd
        guard imageStd.allSatisfy({ $0 != 0 }) else {
            throw .badConfigurationField(path: source, field: "image_std", expected: "non-zero values")
        }
        rescaleFactor = try fields.number("rescale_factor") ?? rescaleFactor
        guard rescaleFactor != 0 else {
            throw .badConfigurationField(path: source, field: "rescale_factor", expected: "a non-zero number (the fused normalisation divides by it)")
        }
        doResize = try fields.bool("do_resize") ?? doResize
        doRescale = try fields.bool("do_rescale") ?? doRescale
        doNormalize = try fields.bool("do_normalize") ?? doNormalize
        doConvertRGB = try fields.bool("do_convert_rgb") ?? doConvertRGB
        if let resample = try fields.integer("resample"), resample != 3 {
            throw .badConfigurationField(path: source, field: "resample", expected: "3 (bicubic, the only filter implemented), got \(resample)")
        }
    }
}

/// Kimi-K2.5 image preprocessing, equal to transformers' `Kimi_K25ImageProcessor` (torch on
/// CPU) bit for bit.
public struct KimiImagePreprocessor: ImagePreprocessing {
    public let configuration: KimiImagePreprocessorConfiguration
    public let decoder: ImageDecoder

    public init(configuration: KimiImagePreprocessorConfiguration, decoder: ImageDecoder = ImageDecoder()) {
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

    /// Resizes (navit_resize + torchvision bicubic), pads, rescales, normalises and
    /// patchifies `image`. `resizedWidth`/`resizedHeight` of the result are the size before
    /// padding; the grid covers the padded size.
    public func preprocess(_ image: RGBImage) throws(VisionPreprocessingError) -> VisionInput {
        let c = configuration, p = c.patchSize
        var resized = image
        var padded = (height: image.height, width: image.width)
        if c.doResize {
            let target = Self.navitResize(
                height: image.height, width: image.width, patchSize: p, mergeSize: c.mergeSize,
                maxPatches: c.maxPatches, maxSizePerSide: c.maxSizePerSide)
            resized = torchBicubicResize(image, width: target.resized.width, height: target.resized.height)
            padded = target.padded
        }
        // Without do_resize patchify's reshape needs whole patches (merge_size is not checked).
        guard padded.height % p == 0, padded.width % p == 0 else {
            throw .notDivisible(height: padded.height, width: padded.width, factor: p)
        }
        let values = valueTable()
        let channels = 3
        let gridHeight = padded.height / p, gridWidth = padded.width / p
        let patchDimension = channels * p * p
        let patchCount = gridHeight * gridWidth
        let pixelValues = [Float](unsafeUninitializedCapacity: patchCount * patchDimension) { out, initialised in
            resized.pixels.withUnsafeBufferPointer { pixels in
                values.withUnsafeBufferPointer { values in
                    var index = 0
                    for patchRow in 0..<gridHeight {
                        for patchColumn in 0..<gridWidth {
                            let top = patchRow * p, left = patchColumn * p
                            // Columns of this patch inside the resized image; the rest is padding.
                            let inside = max(0, min(p, resized.width - left))
                            for channel in 0..<channels {
                                let table = values.baseAddress! + channel * 256
                                for y in 0..<p {
                                    let row = top + y
                                    var x = 0
                                    if row < resized.height {
                                        let source = pixels.baseAddress! + (row * resized.width + left) * channels + channel
                                        while x < inside {
                                            out[index + x] = table[Int(source[x * channels])]
                                            x += 1
                                        }
                                    }
                                    while x < p {
                                        out[index + x] = table[0]
                                        x += 1
                                    }
                                    index += p
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

    /// transformers' `navit_resize`: the size an image is resized to (never larger, within
    /// `maxPatches` patches and `maxSizePerSide` patches a side) and the size it is then
    /// padded to (multiples of patchSize·mergeSize).
    ///
    /// Python's arithmetic carried over: `height // patch_size` on ints, `max(1.0, …)` (whose
    /// value is what matters, not its type), true division and `math.sqrt` in double, and
    /// `int(height * scale)` truncating. The patch counts are exact in double far beyond any
    /// image a decoder accepts.
    public static func navitResize(
        height: Int, width: Int, patchSize: Int, mergeSize: Int, maxPatches: Int, maxSizePerSide: Int
    ) -> (resized: (height: Int, width: Int), padded: (height: Int, width: Int)) {
        let patchesHigh = max(1, height / patchSize), patchesWide = max(1, width / patchSize)
        let currentPatchCount = Double(patchesHigh * patchesWide)
        // Scale to satisfy the total patch budget (both sides, hence the square root)…
        let scaleForTotalPatches = (Double(maxPatches) / currentPatchCount).squareRoot()
        // …and the per-side budget.
        let maxSide = maxSizePerSide * patchSize
        let scaleForHeightPatches = Double(maxSide) / Double(height)
        let scaleForWidthPatches = Double(maxSide) / Double(width)
        let scale = min(1.0, scaleForTotalPatches, scaleForHeightPatches, scaleForWidthPatches)
        let newHeight = min(max(1, Int(Double(height) * scale)), maxSide)
        let newWidth = min(max(1, Int(Double(width) * scale)), maxSide)
        let factor = mergeSize * patchSize
        let padHeight = (factor - newHeight % factor) % factor + newHeight
        let padWidth = (factor - newWidth % factor) % factor + newWidth
        return ((newHeight, newWidth), (padHeight, padWidth))
    }

    /// The float each byte value of each channel becomes after rescale and normalise, in
    /// TorchvisionBackend.rescale_and_normalize's float32 arithmetic (checked against torch).
    private func valueTable() -> [Float] {
        let c = configuration
        var table = [Float](repeating: 0, count: 3 * 256)
        for channel in 0..<3 {
            for byte in 0..<256 {
                let value = Float(byte)
                table[channel * 256 + byte] = switch (c.doRescale, c.doNormalize) {
                case (true, true):
                    // torch.tensor(mean) * (1.0 / rescale_factor): a float32 tensor times a
                    // Python float, which torch's CPU kernel casts to float32 first.
                    (value - Float(c.imageMean[channel]) * Float(1.0 / c.rescaleFactor))
                        / (Float(c.imageStd[channel]) * Float(1.0 / c.rescaleFactor))
                case (true, false): value * Float(c.rescaleFactor)  // uint8 tensor * Python float
                case (false, true): (value - Float(c.imageMean[channel])) / Float(c.imageStd[channel])
                case (false, false): value  // transformers returns the uint8 bytes
                }
            }
        }
        return table
    }
}
