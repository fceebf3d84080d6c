import Foundation
import Testing
@testable import JindouBalancing

@Suite("PNG encoder")
struct PNGTests {
    struct Chunk { var type: String; var data: [UInt8] }

    func u32(_ b: [UInt8], _ i: Int) -> UInt32 {
        UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
    }

    /// Splits a PNG into chunks, checking each chunk's CRC-32.
    func chunks(_ png: [UInt8]) throws -> [Chunk] {
        #expect(Array(png.prefix(8)) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        var result: [Chunk] = []
        var i = 8
        while i < png.count {
            let length = Int(u32(png, i))
            let typed = Array(png[(i + 4)..<(i + 8 + length)])
            #expect(u32(png, i + 8 + length) == CRC32.checksum(typed))
            result.append(Chunk(type: String(decoding: typed.prefix(4), as: UTF8.self), data: Array(typed.dropFirst(4))))
            i += 12 + length
        }
        return result
    }

    /// Deflate's bit order, for the test's own inflater.
    struct BitReader {
        let bytes: [UInt8]
        var position: Int  // in bits
        mutating func bit() -> UInt32 {
            let b = UInt32(bytes[position / 8] >> UInt8(position % 8)) & 1
            position += 1
            return b
        }
        mutating func bits(_ n: Int) -> Int {
            var value = 0
            for i in 0..<n { value |= Int(bit()) << i }
            return value
        }
        mutating func huffman(_ n: Int) -> Int {
            var value = 0
            for _ in 0..<n { value = value << 1 | Int(bit()) }
            return value
        }
        mutating func alignToByte() { position = (position + 7) / 8 * 8 }
    }

    /// Inflates a zlib stream of stored and fixed-Huffman blocks (the kinds the encoder
    /// writes; RFC 1951 §3.2.4 and §3.2.6) and checks its Adler-32.
    func inflate(_ z: [UInt8]) throws -> [UInt8] {
        #expect((UInt16(z[0]) << 8 | UInt16(z[1])) % 31 == 0 && z[0] & 0x0f == 8)
        let lengthBase = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258]
        let lengthExtra = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0]
        let distanceBase = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577]
        var out: [UInt8] = []
        var r = BitReader(bytes: z, position: 16)
        var final = false
        while !final {
            final = r.bit() == 1
            let type = r.bits(2)
            switch type {
            case 0:
                r.alignToByte()
                let i = r.position / 8
                let length = Int(z[i]) | Int(z[i + 1]) << 8
                let complement = Int(z[i + 2]) | Int(z[i + 3]) << 8
                #expect(length ^ complement == 0xffff)
                out += z[(i + 4)..<(i + 4 + length)]
                r.position = (i + 4 + length) * 8
            case 1:
                while true {
                    var code = r.huffman(7)
                    var symbol: Int
                    if code <= 0x17 { symbol = 256 + code } else {
                        code = code << 1 | Int(r.bit())
                        if (0x30...0xBF).contains(code) { symbol = code - 0x30 }
                        else if (0xC0...0xC7).contains(code) { symbol = 280 + code - 0xC0 }
                        else { symbol = 144 + (code << 1 | Int(r.bit())) - 0x190 }
                    }
                    if symbol < 256 { out.append(UInt8(symbol)); continue }
                    if symbol == 256 { break }
                    let length = lengthBase[symbol - 257] + r.bits(lengthExtra[symbol - 257])
                    let d = r.huffman(5)
                    let distance = distanceBase[d] + r.bits(max(0, d / 2 - 1))
                    try #require(distance <= out.count)
                    for _ in 0..<length { out.append(out[out.count - distance]) }
                }
            default:
                Issue.record("unexpected block type \(type)")
                return out
            }
        }
        r.alignToByte()
        let i = r.position / 8
        #expect(u32(z, i) == RGBImage.adler32(out))
        #expect(i + 4 == z.count)
        return out
    }

    /// Undoes the PNG row filters the encoder uses (None and Up).
    func unfilter(_ raw: [UInt8], width: Int, height: Int) -> [UInt8] {
        var pixels: [UInt8] = []
        let stride = width * 3
        for y in 0..<height {
            let filter = raw[y * (stride + 1)]
            #expect(filter == 0 || filter == 2)
            for i in 0..<stride {
                let byte = raw[y * (stride + 1) + 1 + i]
                pixels.append(filter == 2 && y > 0 ? byte &+ pixels[(y - 1) * stride + i] : byte)
            }
        }
        return pixels
    }

    @Test("the chart decodes: signature, IHDR, chunk CRCs, zlib data inflates to the pixels", arguments: [true, false])
    func decodes(compressed: Bool) throws {
        let image = BalanceChart.render(groups: ["W=4", "W=8"], methods: ["none", "replication"], values: [[1.4, 1.02], [1.9, 1.03]])
        let png = image.pngData(compressed: compressed)
        let parts = try chunks(png)
        #expect(parts.map(\.type) == ["IHDR", "IDAT", "IEND"])
        let ihdr = parts[0].data
        #expect(Int(u32(ihdr, 0)) == image.width && Int(u32(ihdr, 4)) == image.height)
        #expect(Array(ihdr[8...]) == [8, 2, 0, 0, 0])
        let raw = try inflate(parts[1].data)
        #expect(raw.count == image.height * (1 + image.width * 3))
        #expect(unfilter(raw, width: image.width, height: image.height) == image.pixels)
        if compressed { #expect(png.count * 20 < image.pixels.count) }
    }

    @Test("stored images larger than one block (64 KiB) split into several")
    func multipleBlocks() throws {
        var image = RGBImage(width: 200, height: 200, background: (1, 2, 3))
        image.draw("0123456789", x: 3, y: 3)
        let raw = try inflate(try chunks(image.pngData(compressed: false))[1].data)
        #expect(raw.count == 200 * 601)
        #expect(unfilter(try inflate(try chunks(image.pngData())[1].data), width: 200, height: 200) == image.pixels)
    }

    @Test("CRC-32 matches the check value of the IEEE polynomial")
    func crc() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(RGBImage.adler32(Array("Wikipedia".utf8)) == 0x11E6_0398)
    }

    @Test("the load plot: heat relative to each layer's hottest expert, bars proportional to shares")
    func loadPlot() throws {
        let layers = [LoadPlot.Layer(layer: 0, experts: [8, 0, 4, 2]), LoadPlot.Layer(layer: 2, experts: [1, 1, 1, 1])]
        let workers = [LoadPlot.Worker(name: "w0", share: 0.5), LoadPlot.Worker(name: "w1", share: 0.25), LoadPlot.Worker(name: "w2", share: 0.25)]
        let image = LoadPlot.render(layers: layers, workers: workers)
        func pixel(_ x: Int, _ y: Int) -> [UInt8] { Array(image.pixels[(3 * (y * image.width + x))..<(3 * (y * image.width + x) + 3)]) }
        func rgb(_ c: (UInt8, UInt8, UInt8)) -> [UInt8] { [c.0, c.1, c.2] }
        let (cw, ch) = LoadPlot.cell(experts: 4, layers: 2)
        let (left, top) = (70, 40)
        func cell(_ row: Int, _ expert: Int) -> [UInt8] { pixel(left + expert * cw + cw / 2, top + row * ch + ch / 2) }
        #expect(cell(0, 0) == rgb(LoadPlot.heat(1)) && cell(0, 1) == [255, 255, 255] && cell(0, 2) == rgb(LoadPlot.heat(0.5)))
        #expect(cell(1, 3) == rgb(LoadPlot.heat(1)))  // a flat layer is uniformly "hottest"
        #expect(LoadPlot.heat(0) == (255, 255, 255) && LoadPlot.heat(2) == LoadPlot.heat(1))
        // Bar lengths: count the bar colour along each worker's row.
        let bar: [UInt8] = [60, 140, 200]
        let lengths = (0..<3).map { i in (0..<image.width).filter { pixel($0, top + i * 26 + 9) == bar }.count }
        #expect(lengths[0] == 2 * lengths[1] && lengths[1] == lengths[2] && lengths[0] > 100)
        let parts = try chunks(image.pngData())
        #expect(unfilter(try inflate(parts[1].data), width: image.width, height: image.height) == image.pixels)
    }
}

