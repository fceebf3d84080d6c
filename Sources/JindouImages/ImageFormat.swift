/// Image container formats, detected from their magic bytes (never from a file name).
public enum ImageFormat: String, Sendable, Equatable {
    case png = "PNG"
    case jpeg = "JPEG"

    /// The format of `bytes`, or the name of a recognised format this module does not
    /// decode, or "unknown (first bytes …)".
    public static func detect(_ bytes: UnsafeRawBufferPointer) -> Result<ImageFormat, UnrecognisedFormat> {
        func starts(_ magic: [UInt8], at offset: Int = 0) -> Bool {
            bytes.count >= offset + magic.count && magic.indices.allSatisfy { bytes[offset + $0] == magic[$0] }
        }
        let ascii = { (text: String) in Array(text.utf8) }
        if starts([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .success(.png) }
        if starts([0xFF, 0xD8, 0xFF]) { return .success(.jpeg) }
        let others: [(String, Bool)] = [
            ("GIF", starts(ascii("GIF87a")) || starts(ascii("GIF89a"))),
            ("WebP", starts(ascii("RIFF")) && starts(ascii("WEBP"), at: 8)),
            ("BMP", starts(ascii("BM"))),
            ("TIFF", starts([0x49, 0x49, 0x2A, 0x00]) || starts([0x4D, 0x4D, 0x00, 0x2A])),
            ("AVIF", starts(ascii("ftypavif"), at: 4) || starts(ascii("ftypavis"), at: 4)),
            ("HEIF", starts(ascii("ftypheic"), at: 4) || starts(ascii("ftypheix"), at: 4) || starts(ascii("ftypmif1"), at: 4)),
            ("JPEG 2000", starts([0x00, 0x00, 0x00, 0x0C, 0x6A, 0x50, 0x20, 0x20]) || starts([0xFF, 0x4F, 0xFF, 0x51])),
            ("QOI", starts(ascii("qoif"))),
            ("ICO", starts([0x00, 0x00, 0x01, 0x00])),
        ]
        if let name = others.first(where: { $0.1 })?.0 { return .failure(UnrecognisedFormat(name: name)) }
        let head = bytes.prefix(8).map { String($0, radix: 16).leftPadded(to: 2) }.joined(separator: " ")
        return .failure(UnrecognisedFormat(name: "unknown (first bytes \(head))"))
    }

    public struct UnrecognisedFormat: Error, Sendable {
        public let name: String
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
