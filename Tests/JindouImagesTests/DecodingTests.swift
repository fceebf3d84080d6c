import Foundation
import Testing
import JindouImages
import JindouTestSupport

@Suite("Decoding PNG and JPEG to the RGB pixels PIL gives")
struct DecodingTests {
    @Test("decoded pixels equal convert_to_rgb(Image.open(file))", arguments: ImageGoldens.shared.images)
    func decodedPixels(image: ImageGoldens.Image) throws {
        let decoded = try ImageDecoder().decode(contentsOf: image.path)
        let expected = try ImageGoldens.tensors().tensor("\(image.name).decoded")
        #expect(expected.shape == [image.height, image.width, 3])
        #expect(decoded.image.width == image.width && decoded.image.height == image.height)
        #expect(decoded.pillowMode == image.pilMode)
        #expect(decoded.compositedOnWhite == image.hasTransparency)
        let differing = zip(decoded.image.pixels, expected.bytes).filter { $0 != $1 }.count
        #expect(differing == 0, "\(differing) of \(expected.byteCount) bytes differ from PIL")
    }

    @Test("format is detected from magic bytes, not the file name")
    func formatFromMagic() throws {
        let png = try Data(contentsOf: URL(fileURLWithPath: ImageGoldens.directory + "/rgb.png"))
        let decoded = try ImageDecoder().decode(png, source: "picture.jpg")
        #expect(decoded.format == .png)
    }
}

@Suite("Decoding errors name the file and the problem")
struct DecodingErrorTests {
    func reason(_ bytes: [UInt8], decoder: ImageDecoder = ImageDecoder()) -> ImageError.Reason? {
        do {
            _ = try decoder.decode(Data(bytes), source: "test-image")
            return nil
        } catch {
            #expect(error.source == "test-image")
            #expect(error.description.hasPrefix("test-image: "))
            return error.reason
        }
    }

    func fixture(_ name: String) throws -> [UInt8] {
        try [UInt8](Data(contentsOf: URL(fileURLWithPath: ImageGoldens.directory + "/" + name)))
    }

    @Test("a missing file and a directory are unreadable")
    func unreadable() {
        for path in ["/nonexistent/picture.png", ImageGoldens.directory] {
            #expect {
                _ = try ImageDecoder().decode(contentsOf: path)
            } throws: { error in
                guard let error = error as? ImageError, case .unreadable = error.reason else { return false }
                return error.source == path
            }
        }
    }

    @Test("no bytes")
    func empty() { #expect(reason([]) == .empty) }

    @Test("other formats are named by their magic bytes", arguments: [
        ("GIF", Array("GIF89a\u{1}\0\u{1}\0".utf8)),
        ("WebP", Array("RIFF\0\0\0\0WEBPVP8 ".utf8)),
        ("BMP", Array("BM\0\0\0\0\0\0\0\0".utf8)),
        ("TIFF", [0x49, 0x49, 0x2A, 0x00, 8, 0, 0, 0]),
        ("AVIF", [0, 0, 0, 0x1C] + Array("ftypavif".utf8)),
    ])
    func unsupportedFormats(name: String, bytes: [UInt8]) {
        #expect(reason(bytes) == .unsupportedFormat(name))
    }

    @Test("unrecognised bytes are reported with the first bytes in hex")
    func unknown() {
        #expect(reason(Array("hello world".utf8)) == .unsupportedFormat("unknown (first bytes 68 65 6c 6c 6f 20 77 6f)"))
    }

    @Test("truncated files are corrupt, not padded", arguments: ["rgb.png", "interlaced.png", "photo.jpg", "progressive.jpg"])
    func truncated(file: String) throws {
        let bytes = try fixture(file)
        for keep in [9, 40, bytes.count / 2, bytes.count - 20] {
            guard case .corrupt(let format, let message) = reason(Array(bytes.prefix(keep))) else {
                Issue.record("\(file) cut to \(keep) bytes was not reported corrupt")
                continue
            }
            #expect(format == (file.hasSuffix(".png") ? .png : .jpeg))
            #expect(!message.isEmpty)
        }
    }

    @Test("the pixel limit is checked from the header before decoding")
    func tooLarge() throws {
        for file in ["rgb.png", "photo.jpg"] {
            let golden = ImageGoldens.shared.images.first { $0.file == file }!
            let limit = golden.width * golden.height - 1
            #expect(reason(try fixture(file), decoder: ImageDecoder(maxPixels: limit))
                == .tooLarge(width: golden.width, height: golden.height, maxPixels: limit))
            #expect(reason(try fixture(file), decoder: ImageDecoder(maxPixels: limit + 1)) == nil)
        }
        // A header claiming 65535 × 65535 with no pixel data behind it.
        var png = try fixture("rgb.png")
        patchPNGHeader(&png, width: 65535, height: 65535)
        #expect(reason(png) == .tooLarge(width: 65535, height: 65535, maxPixels: ImageDecoder.defaultMaxPixels))
        #expect(ImageDecoder.defaultMaxPixels == 8192 * 8192)
    }

    @Test("zero width or height")
    func zeroSized() throws {
        var png = try fixture("rgb.png")
        patchPNGHeader(&png, width: 0, height: 61)
        #expect(reason(png) == .zeroSized(width: 0, height: 61))

        // JPEG SOF0 height and width (after FF C0, length, precision).
        var jpeg = try fixture("gray.jpg")
        let sof = (0..<(jpeg.count - 1)).first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 }!
        jpeg[sof + 5] = 0
        jpeg[sof + 6] = 0
        #expect(reason(jpeg) == .zeroSized(width: 45, height: 0))
    }

    @Test("CMYK JPEGs are refused with the colour space named")
    func cmyk() throws {
        // A 4-component SOF: the gray JPEG's header is not valid for it, but the colour space
        // is decided when the header is read, before any scan.
        var jpeg = try fixture("gray.jpg")
        let sof = (0..<(jpeg.count - 1)).first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 }!
        let length = Int(jpeg[sof + 2]) << 8 | Int(jpeg[sof + 3])
        let components: [UInt8] = [1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0, 4, 0x11, 0]
        var sofSegment: [UInt8] = [0xFF, 0xC0, 0, UInt8(8 + components.count), 8] + Array(jpeg[(sof + 5)..<(sof + 9)]) + [4] + components
        sofSegment[3] = UInt8(sofSegment.count - 2)
        jpeg.replaceSubrange(sof..<(sof + 2 + length), with: sofSegment)
        switch reason(jpeg) {
        case .unsupportedColorSpace(.jpeg, let message): #expect(message.contains("CMYK"))
        case .corrupt(.jpeg, let message): Issue.record("CMYK reported as corrupt: \(message)")
        default: Issue.record("CMYK JPEG was not refused")
        }
    }

    /// Rewrites IHDR's width and height and its CRC.
    func patchPNGHeader(_ png: inout [UInt8], width: UInt32, height: UInt32) {
        for (offset, value) in [(16, width), (20, height)] {
            for i in 0..<4 { png[offset + i] = UInt8(truncatingIfNeeded: value >> (24 - 8 * UInt32(i))) }
        }
        let crc = crc32(png[12..<29])
        for i in 0..<4 { png[29 + i] = UInt8(truncatingIfNeeded: crc >> (24 - 8 * UInt32(i))) }
    }

    func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }
}

@Suite("Damaged files never crash the decoder")
struct FuzzTests {
    /// SplitMix64: a fixed sequence, so failures reproduce.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    @Test("truncated and mutated fixtures decode or throw ImageError", arguments: ImageGoldens.shared.images)
    func fuzz(image: ImageGoldens.Image) throws {
        let original = try [UInt8](Data(contentsOf: URL(fileURLWithPath: image.path)))
        var random = Generator(state: UInt64(original.count))
        var variants: [[UInt8]] = stride(from: 0, to: original.count, by: max(1, original.count / 40)).map { Array(original.prefix($0)) }
        for round in 0..<60 {
            var bytes = original
            for _ in 0..<(1 + round % 8) {
                let position = Int.random(in: 0..<bytes.count, using: &random)
                switch round % 3 {
                case 0: bytes[position] = UInt8.random(in: 0...255, using: &random)
                case 1: bytes[position] ^= 1 << UInt8.random(in: 0..<8, using: &random)
                default: bytes.removeSubrange(position..<min(bytes.count, position + Int.random(in: 1...16, using: &random)))
                }
            }
            variants.append(bytes)
        }
        var decoded = 0, refused = 0
        for bytes in variants {
            do {
                let result = try ImageDecoder(maxPixels: 4096 * 4096).decode(Data(bytes), source: image.file)
                #expect(result.image.pixels.count == result.image.width * result.image.height * 3)
                decoded += 1
            } catch {
                #expect(!error.description.isEmpty)
                refused += 1
            }
        }
        #expect(decoded + refused == variants.count)
        #expect(refused > 0)
    }
}
