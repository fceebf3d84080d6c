import Foundation

// A minimal PNG writer (PNG spec, W3C 2003: signature, IHDR/IDAT/IEND chunks, CRC-32 per
// chunk) with zlib (RFC 1950) around deflate (RFC 1951), no dependency. Two encodings:
// stored blocks (BTYPE 00, no compression) and one fixed-Huffman block (BTYPE 01) whose
// only matches are runs at distance 1 or 3 (one RGB pixel back). Rows use the Up filter,
// so a chart's flat areas become long zero runs and the PNG shrinks ~100×.

/// An RGB raster.
public struct RGBImage: Sendable {
    public let width: Int
    public let height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, background: (UInt8, UInt8, UInt8) = (255, 255, 255)) {
        self.width = width
        self.height = height
        pixels = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<(width * height) {
            pixels[3 * i] = background.0; pixels[3 * i + 1] = background.1; pixels[3 * i + 2] = background.2
        }
    }

    public mutating func fill(x: Int, y: Int, width w: Int, height h: Int, color: (UInt8, UInt8, UInt8)) {
        for yy in max(0, y)..<min(height, y + h) where w > 0 {
            for xx in max(0, x)..<min(width, x + w) {
                let i = 3 * (yy * width + xx)
                pixels[i] = color.0; pixels[i + 1] = color.1; pixels[i + 2] = color.2
            }
        }
    }

    /// Draws `text` in the built-in 5×7 font (digits, a few letters and signs), `scale`
    /// pixels per font pixel, top-left at (x, y). Unknown characters draw as blanks.
    public mutating func draw(_ text: String, x: Int, y: Int, scale: Int = 2, color: (UInt8, UInt8, UInt8) = (0, 0, 0)) {
        var cx = x
        for ch in text.uppercased() {
            if let rows = BitmapFont.glyphs[ch] {
                for (r, bits) in rows.enumerated() {
                    for c in 0..<5 where bits & (1 << (4 - c)) != 0 {
                        fill(x: cx + c * scale, y: y + r * scale, width: scale, height: scale, color: color)
                    }
                }
            }
            cx += 6 * scale
        }
    }

    /// Width in pixels of `text` drawn at `scale`.
    public static func textWidth(_ text: String, scale: Int = 2) -> Int { text.count * 6 * scale - scale }

    /// The image as PNG bytes (8-bit RGB). `compressed`: Up-filtered rows in a fixed-Huffman
    /// run-length deflate block; otherwise unfiltered rows in stored blocks.
    public func pngData(compressed: Bool = true) -> [UInt8] {
        var raw: [UInt8] = []
        let stride = width * 3
        raw.reserveCapacity(height * (1 + stride))
        for y in 0..<height {
            let row = pixels[(y * stride)..<((y + 1) * stride)]
            if compressed {
                raw.append(2)  // Up: byte minus the byte above
                for (i, byte) in row.enumerated() { raw.append(y == 0 ? byte : byte &- pixels[(y - 1) * stride + i]) }
            } else {
                raw.append(0)
                raw += row
            }
        }
        var png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        var ihdr: [UInt8] = []
        ihdr += bigEndian(UInt32(width)); ihdr += bigEndian(UInt32(height))
        ihdr += [8, 2, 0, 0, 0]  // 8-bit, RGB, deflate, adaptive filtering, no interlace
        appendChunk(&png, type: "IHDR", data: ihdr)
        appendChunk(&png, type: "IDAT", data: compressed ? Self.zlibRunLength(raw) : Self.zlibStored(raw))
        appendChunk(&png, type: "IEND", data: [])
        return png
    }

    /// zlib stream of stored deflate blocks (≤ 65 535 bytes each) with an Adler-32 trailer.
    public static func zlibStored(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x78, 0x01]  // CM 8, CINFO 7, FLEVEL 0; (0x7801 % 31 == 0)
        var offset = 0
        repeat {
            let length = min(65_535, data.count - offset)
            let final: UInt8 = offset + length == data.count ? 1 : 0
            out.append(final)  // BFINAL, BTYPE 00; the rest of the byte is padding
            out += [UInt8(length & 0xff), UInt8(length >> 8), UInt8(~length & 0xff), UInt8((~length >> 8) & 0xff)]
            out += data[offset..<(offset + length)]
            offset += length
        } while offset < data.count
        out += bigEndian(adler32(data))
        return out
    }

    /// zlib stream of one fixed-Huffman deflate block (RFC 1951 §3.2.6) of literals and
    /// runs: matches at distance 1 or 3 only, lengths 3…258.
    public static func zlibRunLength(_ data: [UInt8]) -> [UInt8] {
        var bits = BitWriter()
        bits.bytes = [0x78, 0x01]
        bits.write(1, count: 1)  // BFINAL
        bits.write(1, count: 2)  // BTYPE 01: fixed Huffman
        var i = 0
        while i < data.count {
            var bestLength = 0, bestDistance = 0
            for distance in [1, 3] where i >= distance {
                var length = 0
                while length < 258 && i + length < data.count && data[i + length] == data[i + length - distance] { length += 1 }
                if length > bestLength { bestLength = length; bestDistance = distance }
            }
            if bestLength >= 3 {
                var code = 0
                while code + 1 < lengthBase.count && lengthBase[code + 1] <= bestLength { code += 1 }
                bits.writeLiteralLength(257 + code)
                bits.write(UInt32(bestLength - lengthBase[code]), count: lengthExtra[code])
                bits.writeHuffman(UInt32(bestDistance == 1 ? 0 : 2), count: 5)  // distance codes 0 (1) and 2 (3)
                i += bestLength
            } else {
                bits.writeLiteralLength(Int(data[i]))
                i += 1
            }
        }
        bits.writeLiteralLength(256)  // end of block
        bits.flush()
        return bits.bytes + bigEndian(adler32(data))
    }

    static let lengthBase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
    static let lengthExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]

    public static func adler32(_ data: [UInt8]) -> UInt32 {
        var a: UInt32 = 1, b: UInt32 = 0
        for byte in data {
            a = (a + UInt32(byte)) % 65_521
            b = (b + a) % 65_521
        }
        return b << 16 | a
    }

    private func appendChunk(_ png: inout [UInt8], type: String, data: [UInt8]) {
        png += bigEndian(UInt32(data.count))
        let typed = Array(type.utf8) + data
        png += typed
        png += bigEndian(CRC32.checksum(typed))
    }
}

/// Deflate's bit order: fields least-significant bit first, Huffman codes most-significant first.
struct BitWriter {
    var bytes: [UInt8] = []
    private var buffer: UInt64 = 0
    private var used = 0

    mutating func write(_ value: UInt32, count: Int) {
        guard count > 0 else { return }
        buffer |= UInt64(value & ((1 << UInt32(count)) - 1)) << UInt64(used)
        used += count
        while used >= 8 { bytes.append(UInt8(buffer & 0xff)); buffer >>= 8; used -= 8 }
    }

    mutating func writeHuffman(_ code: UInt32, count: Int) {
        var reversed: UInt32 = 0
        for b in 0..<count where code & (1 << UInt32(b)) != 0 { reversed |= 1 << UInt32(count - 1 - b) }
        write(reversed, count: count)
    }

    /// A symbol of the fixed literal/length code (RFC 1951 §3.2.6).
    mutating func writeLiteralLength(_ symbol: Int) {
        switch symbol {
        case 0...143: writeHuffman(UInt32(0x30 + symbol), count: 8)
        case 144...255: writeHuffman(UInt32(0x190 + symbol - 144), count: 9)
        case 256...279: writeHuffman(UInt32(symbol - 256), count: 7)
        default: writeHuffman(UInt32(0xC0 + symbol - 280), count: 8)
        }
    }

    mutating func flush() {
        if used > 0 { bytes.append(UInt8(buffer & 0xff)) }
        buffer = 0
        used = 0
    }
}

private func bigEndian(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)] }

/// A 5×7 bitmap font: each glyph is 7 rows, the low 5 bits of each row left to right.
enum BitmapFont {
    static let glyphs: [Character: [UInt8]] = [
        "0": [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        "1": [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        "2": [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        "3": [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        "4": [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        "5": [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        "6": [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        "7": [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        "8": [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        "9": [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        ".": [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        "=": [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00],
        "+": [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        "/": [0x01, 0x01, 0x02, 0x04, 0x08, 0x10, 0x10],
        "%": [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        "-": [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        "A": [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        "B": [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        "C": [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        "E": [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        "I": [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        "K": [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        "L": [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        "M": [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        "N": [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        "O": [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        "P": [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        "R": [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        "S": [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        "T": [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        "W": [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        "X": [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        "D": [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        "F": [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        "G": [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        "H": [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        "J": [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        "Q": [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        "U": [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        "V": [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        "Y": [0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04],
        "Z": [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        "_": [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F],
        ":": [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        "(": [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ")": [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
    ]
}

/// A grouped bar chart of max/mean worker load: one group per worker count, one bar per
/// method, grey reference lines at 1.0 and at issue 10's bar of 1.10.
public enum BalanceChart {
    /// Bar colours, by position in `methods` (the Markdown legend lists them in order).
    public static let palette: [(UInt8, UInt8, UInt8)] = [
        (200, 60, 50), (240, 160, 40), (60, 140, 200), (40, 170, 90), (150, 90, 190), (120, 120, 120),
        (30, 40, 120), (0, 150, 150),
    ]

    /// `values[group][method]`; groups labelled `W=4`, … below the axis, values above bars.
    public static func render(groups: [String], methods: [String], values: [[Double]]) -> RGBImage {
        let barWidth = 22, gap = 4, groupGap = 30, left = 60, top = 20, plotHeight = 260, bottom = 40
        let groupWidth = methods.count * (barWidth + gap) - gap
        let width = left + groups.count * (groupWidth + groupGap) + 10
        let height = top + plotHeight + bottom
        var image = RGBImage(width: width, height: height)
        let maxValue = max(1.2, (values.flatMap { $0 }.max() ?? 1) * 1.08)
        func y(_ v: Double) -> Int { top + plotHeight - Int(Double(plotHeight) * v / maxValue) }
        // Axis, ticks every 0.5.
        image.fill(x: left - 2, y: top, width: 2, height: plotHeight, color: (0, 0, 0))
        image.fill(x: left - 2, y: top + plotHeight, width: width - left, height: 2, color: (0, 0, 0))
        var tick = 0.0
        while tick <= maxValue {
            let label = String(format: "%.1f", tick)
            image.draw(label, x: left - 8 - RGBImage.textWidth(label), y: y(tick) - 7)
            image.fill(x: left - 6, y: y(tick), width: 4, height: 1, color: (0, 0, 0))
            tick += 0.5
        }
        for reference in [1.0, 1.1] {
            image.fill(x: left, y: y(reference), width: width - left, height: 1, color: (160, 160, 160))
        }
        for (g, group) in groups.enumerated() {
            let x0 = left + 10 + g * (groupWidth + groupGap)
            for (m, value) in values[g].enumerated() {
                let x = x0 + m * (barWidth + gap)
                image.fill(x: x, y: y(value), width: barWidth, height: top + plotHeight - y(value), color: palette[m % palette.count])
            }
            image.draw(group, x: x0 + (groupWidth - RGBImage.textWidth(group)) / 2, y: top + plotHeight + 12)
        }
        return image
    }
}
