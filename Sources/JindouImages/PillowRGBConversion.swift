// RGB conversion as transformers' `image_transforms.convert_to_rgb` does it on a PIL image
// (transformers 5.23):
//
//     has_alpha = "A" in image.getbands() or image.info.get("transparency") is not None
//     if has_alpha:
//         image = image.convert("RGBA")
//         background = PIL.Image.new("RGBA", image.size, (255, 255, 255, 255))
//         image_rgb = PIL.Image.alpha_composite(background, image).convert("RGB")
//     else:
//         image_rgb = image.convert("RGB")
//
// with PIL 13's conversions: Convert.c (`l2rgb`, `I16_RGB` clamps 16-bit gray to 255,
// `convert_transparent` + `rgbT2a`, which compares pixels with the tRNS colour's low bytes
// *after* the 8-bit conversion) and AlphaComposite.c (7-bit fixed point, rounded /255).

enum PillowRGBConversion {
    struct Converted {
        let image: RGBImage
        let pillowMode: String
        let compositedOnWhite: Bool
    }

    static func convert(
        _ samples: UnsafeBufferPointer<UInt8>, width: Int, height: Int, channels: Int, bitsPerSample: Int,
        sourceBitDepth: Int, transparentColor: (gray: UInt16, red: UInt16, green: UInt16, blue: UInt16)?,
        wasPalette: Bool
    ) -> Converted {
        let count = width * height
        var rgb = [UInt8](repeating: 0, count: count * 3)
        var mode = "RGB"
        var composited = false
        rgb.withUnsafeMutableBufferPointer { out in
            switch (channels, bitsPerSample) {
            case (1, _):
                let sixteen = bitsPerSample == 16
                mode = sixteen ? "I;16" : (sourceBitDepth == 1 ? "1" : "L")
                // PIL stores mode "1"'s tRNS as 255 or 0; every other gray mode keeps the
                // stored value and rgbT2a compares its low byte.
                let transparent: Int? = transparentColor.map {
                    sourceBitDepth == 1 ? ($0.gray != 0 ? 255 : 0) : Int($0.gray & 0xFF)
                }
                composited = transparent != nil
                for i in 0..<count {
                    // I16_RGB: values above 255 become 255 (no scaling).
                    let value = sixteen ? UInt8(min(Int(samples[2 * i]) << 8 | Int(samples[2 * i + 1]), 255)) : samples[i]
                    let alpha: UInt8 = Int(value) == transparent ? 0 : 255
                    let shown = transparent == nil ? value : compositeOnWhite(value, alpha: alpha)
                    out[3 * i] = shown
                    out[3 * i + 1] = shown
                    out[3 * i + 2] = shown
                }
            case (2, _):
                // 8-bit LA is mode "LA"; 16-bit gray+alpha is opened as "RGBA" ("LA;16B").
                mode = sourceBitDepth == 16 ? "RGBA" : "LA"
                composited = true
                for i in 0..<count {
                    let shown = compositeOnWhite(samples[2 * i], alpha: samples[2 * i + 1])
                    out[3 * i] = shown
                    out[3 * i + 1] = shown
                    out[3 * i + 2] = shown
                }
            case (3, _):
                mode = wasPalette ? "P" : "RGB"
                let transparent = transparentColor.map {
                    (UInt8($0.red & 0xFF), UInt8($0.green & 0xFF), UInt8($0.blue & 0xFF))
                }
                composited = transparent != nil
                for i in 0..<count {
                    let r = samples[3 * i], g = samples[3 * i + 1], b = samples[3 * i + 2]
                    if let (tr, tg, tb) = transparent {
                        let alpha: UInt8 = (r, g, b) == (tr, tg, tb) ? 0 : 255
                        out[3 * i] = compositeOnWhite(r, alpha: alpha)
                        out[3 * i + 1] = compositeOnWhite(g, alpha: alpha)
                        out[3 * i + 2] = compositeOnWhite(b, alpha: alpha)
                    } else {
                        out[3 * i] = r
                        out[3 * i + 1] = g
                        out[3 * i + 2] = b
                    }
                }
            default:
                mode = wasPalette ? "P" : "RGBA"
                composited = true
                for i in 0..<count {
                    let alpha = samples[4 * i + 3]
                    for c in 0..<3 { out[3 * i + c] = compositeOnWhite(samples[4 * i + c], alpha: alpha) }
                }
            }
        }
        return Converted(image: RGBImage(width: width, height: height, pixels: rgb), pillowMode: mode, compositedOnWhite: composited)
    }

    /// One channel of `ImagingAlphaComposite(white opaque background, pixel)`
    /// (AlphaComposite.c, PRECISION_BITS 7).
    @inline(__always)
    static func compositeOnWhite(_ source: UInt8, alpha: UInt8) -> UInt8 {
        if alpha == 0 { return 255 }
        let precisionBits: UInt32 = 7
        let a = UInt32(alpha), destinationAlpha: UInt32 = 255, destination: UInt32 = 255
        let blend = destinationAlpha * (255 - a)
        let outAlpha255 = a * 255 + blend
        let coefficient1 = a * 255 * 255 * (1 << precisionBits) / outAlpha255
        let coefficient2 = 255 * (1 << precisionBits) - coefficient1
        let mixed = UInt32(source) * coefficient1 + destination * coefficient2 + (0x80 << precisionBits)
        return UInt8(truncatingIfNeeded: (((mixed >> 8) + mixed) >> 8) >> precisionBits)
    }
}
