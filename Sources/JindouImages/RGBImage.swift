/// An 8-bit RGB image: `width × height` pixels, interleaved R, G, B, rows from the top.
///
/// This is what transformers' image processors work on after `convert_to_rgb`
/// (`np.array(image)` of a PIL "RGB" image, channels last).
public struct RGBImage: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(width > 0 && height > 0, "RGBImage needs a positive size, got \(width)×\(height)")
        precondition(pixels.count == width * height * 3, "RGBImage \(width)×\(height) needs \(width * height * 3) bytes, got \(pixels.count)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }
}

/// A decoded file: the RGB pixels and how they were obtained.
public struct DecodedImage: Sendable {
    public let image: RGBImage
    public let format: ImageFormat
    /// The mode PIL opens the file in ("RGB", "RGBA", "L", "LA", "P", "I;16", "1").
    public let pillowMode: String
    /// Whether the file had transparency (an alpha channel or a tRNS chunk), so the pixels
    /// were alpha-composited onto white rather than just having alpha dropped.
    public let compositedOnWhite: Bool
}
