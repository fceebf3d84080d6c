/// Why an image could not be decoded, with the file (or `<memory>`) it came from.
public struct ImageError: Error, Equatable, CustomStringConvertible {
    public enum Reason: Equatable, Sendable {
        /// The file could not be read at all (missing, permissions, a directory).
        case unreadable(String)
        /// No bytes.
        case empty
        /// Recognised by its magic bytes but not decoded here ("GIF", "WebP", "BMP", …),
        /// or not recognised at all ("unknown", with the first bytes in hex).
        case unsupportedFormat(String)
        /// A PNG or JPEG whose data the decoder rejected: truncated, bad CRC, bad Huffman
        /// code, bad header… with the library's message.
        case corrupt(ImageFormat, String)
        /// The header declares more pixels than the decoder's limit (nothing was decoded).
        case tooLarge(width: Int, height: Int, maxPixels: Int)
        /// The header declares a zero width or height.
        case zeroSized(width: Int, height: Int)
        /// A colour space this decoder does not convert (CMYK/YCCK JPEG).
        case unsupportedColorSpace(ImageFormat, String)
        /// malloc failed inside the decoder.
        case outOfMemory(width: Int, height: Int)
    }

    /// The file path, or `<memory>` for bytes that were passed in.
    public let source: String
    public let reason: Reason

    public init(source: String, reason: Reason) {
        self.source = source
        self.reason = reason
    }

    public var description: String {
        switch reason {
        case .unreadable(let why): "\(source): cannot read image file: \(why)"
        case .empty: "\(source): image file is empty (0 bytes)"
        case .unsupportedFormat(let name): "\(source): unsupported image format \(name) (PNG and JPEG are supported)"
        case .corrupt(let format, let why): "\(source): corrupt or truncated \(format.rawValue) data: \(why)"
        case .tooLarge(let width, let height, let maxPixels):
            "\(source): image is \(width)×\(height) = \(width * height) pixels, more than the limit of \(maxPixels)"
        case .zeroSized(let width, let height): "\(source): image has zero size (\(width)×\(height))"
        case .unsupportedColorSpace(let format, let why): "\(source): unsupported \(format.rawValue) colour space: \(why)"
        case .outOfMemory(let width, let height): "\(source): out of memory decoding a \(width)×\(height) image"
        }
    }
}
