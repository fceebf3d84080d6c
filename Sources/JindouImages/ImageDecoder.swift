// Internal: clients of JindouImages never see the C codecs (nor need their module map).
internal import CJindouImageCodecs
import Foundation

/// Decodes PNG and JPEG files into the RGB pixels transformers' image processors see.
///
/// The result equals `np.array(convert_to_rgb(PIL.Image.open(path)))` with transformers'
/// `image_transforms.convert_to_rgb` (which the Qwen2-VL PIL processor applies when
/// `do_convert_rgb`): images with transparency (an alpha channel or a tRNS chunk) are
/// alpha-composited onto opaque white with PIL's integer `alpha_composite`, others are
/// converted with PIL's `convert("RGB")`. See docs/images.md for the exact rules.
public struct ImageDecoder: Sendable {
    /// 8192 × 8192: a 64 Mpx image already decodes to 192 MB of RGB.
    public static let defaultMaxPixels = 8192 * 8192

    /// Largest width × height accepted, checked from the header before any pixel is decoded.
    public var maxPixels: Int

    public init(maxPixels: Int = ImageDecoder.defaultMaxPixels) {
        precondition(maxPixels > 0, "maxPixels must be positive")
        self.maxPixels = maxPixels
    }

    /// Reads and decodes the file at `path`.
    public func decode(contentsOf path: String) throws(ImageError) -> DecodedImage {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ImageError(source: path, reason: .unreadable("no such file"))
        }
        guard !isDirectory.boolValue else { throw ImageError(source: path, reason: .unreadable("is a directory")) }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ImageError(source: path, reason: .unreadable(error.localizedDescription))
        }
        return try decode(data, source: path)
    }

    /// Decodes an image held in memory; `source` names it in errors.
    public func decode(_ data: Data, source: String = "<memory>") throws(ImageError) -> DecodedImage {
        let result: Result<DecodedImage, ImageError> = data.withUnsafeBytes { bytes in
            Result { () throws(ImageError) in try decode(bytes, source: source) }
        }
        return try result.get()
    }

    private func decode(_ bytes: UnsafeRawBufferPointer, source: String) throws(ImageError) -> DecodedImage {
        guard !bytes.isEmpty else { throw ImageError(source: source, reason: .empty) }
        let format: ImageFormat
        switch ImageFormat.detect(bytes) {
        case .success(let detected): format = detected
        case .failure(let unrecognised): throw ImageError(source: source, reason: .unsupportedFormat(unrecognised.name))
        }
        var raw = jindou_decoded_image()
        let base = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let status = switch format {
        case .png: jindou_png_decode(base, bytes.count, UInt64(maxPixels), &raw)
        case .jpeg: jindou_jpeg_decode(base, bytes.count, UInt64(maxPixels), &raw)
        }
        defer { jindou_decoded_image_release(&raw) }
        let width = Int(raw.width), height = Int(raw.height)
        let message = withUnsafeBytes(of: raw.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        switch Int(status) {
        case Int(JINDOU_IMAGE_OK.rawValue): break
        case Int(JINDOU_IMAGE_TOO_LARGE.rawValue):
            throw ImageError(source: source, reason: .tooLarge(width: width, height: height, maxPixels: maxPixels))
        case Int(JINDOU_IMAGE_EMPTY.rawValue):
            throw ImageError(source: source, reason: .zeroSized(width: width, height: height))
        case Int(JINDOU_IMAGE_UNSUPPORTED.rawValue):
            throw ImageError(source: source, reason: .unsupportedColorSpace(format, message))
        case Int(JINDOU_IMAGE_OUT_OF_MEMORY.rawValue):
            throw ImageError(source: source, reason: .outOfMemory(width: width, height: height))
        default:
            throw ImageError(source: source, reason: .corrupt(format, message))
        }
        let samples = UnsafeBufferPointer(start: raw.pixels, count: raw.pixels_size)
        let converted = PillowRGBConversion.convert(
            samples, width: width, height: height, channels: Int(raw.channels),
            bitsPerSample: Int(raw.bits_per_sample), sourceBitDepth: Int(raw.source_bit_depth),
            transparentColor: raw.has_transparent_color != 0
                ? (raw.transparent_gray, raw.transparent_red, raw.transparent_green, raw.transparent_blue) : nil,
            wasPalette: raw.was_palette != 0
        )
        return DecodedImage(
            image: converted.image, format: format, pillowMode: converted.pillowMode,
            compositedOnWhite: converted.compositedOnWhite
        )
    }
}
