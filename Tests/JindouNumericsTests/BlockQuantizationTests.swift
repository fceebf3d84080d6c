import Foundation
import JindouTensors
import JindouTestSupport
import Testing

/// The block-quantisation fixtures and their manifest (tools/fixture_quants.py): ggml's
/// type traits, blocks `ggml_quantize_chunk` wrote from float rows, random valid blocks,
/// and the `gguf` package's decodings of both (equal to ggml's `dequantize_row_*`).
struct QuantFixtures: Sendable {
    struct Manifest: Decodable, Sendable {
        let ggmlVersion: String
        let formats: [String: Format]
        let activationFormats: [String: Traits]
        let otherGgmlTypes: [String: UInt32]
        let files: [String: String]
    }

    struct Format: Decodable, Sendable {
        let ggmlType: UInt32
        let ggmlName: String
        let blockSize: Int
        let typeSize: Int
        let vecDotType: String
        let requiresImatrix: Bool
        let quantizedWithImatrix: Bool
        let fixtures: [Fixture]
    }

    struct Traits: Decodable, Sendable {
        let ggmlType: UInt32
        let blockSize: Int
        let typeSize: Int
    }

    /// One encoded matrix: ggml's encoding of `input` (with `imatrix` importances when
    /// set), or random blocks; `decoded` is the `gguf` package's dequantisation.
    struct Fixture: Decodable, Sendable, CustomStringConvertible {
        let kind: String
        let rows: Int
        let columns: Int
        let input: String?
        let imatrix: String?
        let encoded: String
        let decoded: String?
        let relativeRmse: Double?

        var description: String { encoded }
    }

    static let manifest: Manifest = {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        // A missing or malformed manifest fails every test that reads it, naming the file.
        return try! decoder.decode(Manifest.self, from: data("manifest.json"))
    }()

    static func data(_ name: String) throws -> Data {
        try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("quants/" + name)))
    }

    static func bytes(_ name: String) throws -> [UInt8] { [UInt8](try data(name)) }

    static func floats(_ name: String) throws -> [Float] {
        let data = try data(name)
        return data.withUnsafeBytes { raw in (0..<(data.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) } }
    }

    static func format(_ format: BlockFormat) throws -> Format {
        try #require(manifest.formats[format.rawValue], "manifest.json has no \(format.rawValue)")
    }

    /// Indices where `a` and `b` differ bit for bit.
    static func differing(_ a: [Float], _ b: [Float]) -> [Int] {
        a.indices.filter { a[$0].bitPattern != b[$0].bitPattern }
    }

    /// Jindou's encoding of `fixture.input` (row by row, with the fixture's importances).
    static func encode(_ format: BlockFormat, _ fixture: Fixture) throws -> [UInt8] {
        let input = try floats(try #require(fixture.input))
        let importance = try fixture.imatrix.map(floats)
        let rowBytes = try #require(format.rowBytes(columns: fixture.columns))
        var encoded = [UInt8](repeating: 0xAA, count: rowBytes * fixture.rows)
        input.withUnsafeBufferPointer { x in
            encoded.withUnsafeMutableBytes { out in
                for r in 0..<fixture.rows {
                    let row = UnsafeBufferPointer(rebasing: x[(r * fixture.columns)..<((r + 1) * fixture.columns)])
                    let target = UnsafeMutableRawBufferPointer(rebasing: out[(r * rowBytes)..<((r + 1) * rowBytes)])
                    if let importance {
                        importance.withUnsafeBufferPointer { format.quantize(row, into: target, importance: $0) }
                    } else {
                        format.quantize(row, into: target)
                    }
                }
            }
        }
        return encoded
    }

    static func decode(_ format: BlockFormat, _ encoded: [UInt8], count: Int) -> [Float] {
        var decoded = [Float](repeating: .nan, count: count)
        encoded.withUnsafeBytes { q in decoded.withUnsafeMutableBufferPointer { format.dequantize(q, into: $0) } }
        return decoded
    }

    /// √(Σ(a − x)² / Σx²).
    static func relativeRMSE(_ a: [Float], _ x: [Float]) -> Double {
        let error = zip(a, x).reduce(0.0) { $0 + (Double($1.0) - Double($1.1)) * (Double($1.0) - Double($1.1)) }
        return (error / x.reduce(0.0) { $0 + Double($1) * Double($1) }).squareRoot()
    }
}

/// Every ggml block format against llama.cpp's own bytes and the `gguf` package's decodings.
@Suite("GGUF block quantisation")
struct BlockQuantizationTests {
    @Test("sizes, ids and activation formats equal ggml's type traits", arguments: BlockFormat.allCases)
    func traits(format: BlockFormat) throws {
        let ggml = try QuantFixtures.format(format)
        #expect(format.ggmlTypeID == ggml.ggmlType && BlockFormat(ggmlTypeID: ggml.ggmlType) == format)
        #expect("\(format)" == ggml.ggmlName, "case names are ggml_type_name")
        #expect(format.blockSize == ggml.blockSize && format.bytesPerBlock == ggml.typeSize)
        #expect(format.bitsPerWeight == Double(8 * ggml.typeSize) / Double(ggml.blockSize))
        #expect(format.activationFormat.rawValue == ggml.vecDotType)
        #expect(format.rowBytes(columns: 3 * ggml.blockSize) == 3 * ggml.typeSize)
        #expect(format.rowBytes(columns: 3 * ggml.blockSize + 1) == nil)
        // ggml can only quantise these with an importance matrix; Jindou has no encoder for them.
        if ggml.requiresImatrix { #expect(!format.canQuantize) }
    }

    @Test func everyGGMLTypeIsAFormatOrNamedOther() throws {
        let manifest = QuantFixtures.manifest
        #expect(Set(manifest.formats.keys) == Set(BlockFormat.allCases.map(\.rawValue)))
        for (name, id) in manifest.otherGgmlTypes {
            #expect(BlockFormat(ggmlTypeID: id) == nil, "\(name) (\(id)) is not a block format Jindou reads")
        }
        for activation in ActivationFormat.allCases {
            let ggml = try #require(manifest.activationFormats[activation.rawValue])
            #expect(activation.ggmlTypeID == ggml.ggmlType && activation.blockSize == ggml.blockSize && activation.bytesPerBlock == ggml.typeSize)
        }
        #expect(Set(manifest.activationFormats.keys) == Set(ActivationFormat.allCases.map(\.rawValue)))
    }

    /// Blocks llama.cpp wrote (every kind of row, 32-weight formats also on rows of 35
    /// blocks) and random valid ones (the IQ formats' indices visit every grid entry).
    @Test("decoding equals the gguf package's dequantize bit for bit", arguments: BlockFormat.allCases)
    func decodesLikeGGUF(format: BlockFormat) throws {
        let fixtures = try QuantFixtures.format(format).fixtures.filter { $0.decoded != nil }
        #expect(fixtures.contains { $0.kind == "ggml" } && fixtures.contains { $0.kind == "random" })
        for fixture in fixtures {
            let expected = try QuantFixtures.floats(fixture.decoded!)
            #expect(expected.count == fixture.rows * fixture.columns)
            let encoded = try QuantFixtures.bytes(fixture.encoded)
            #expect(encoded.count == fixture.rows * format.rowBytes(columns: fixture.columns)!)
            let differing = QuantFixtures.differing(QuantFixtures.decode(format, encoded, count: expected.count), expected)
            #expect(differing.isEmpty, "\(fixture): \(differing.count) values differ, first at \(differing.first ?? -1)")
        }
    }

    /// Without importances, what llama-quantize writes without an imatrix; with them
    /// (`*.imatrix.bin`), what it writes with one.
    @Test("encoding equals ggml_quantize_chunk byte for byte", arguments: BlockFormat.allCases.filter(\.canQuantize))
    func encodesLikeGGML(format: BlockFormat) throws {
        let fixtures = try QuantFixtures.format(format).fixtures.filter { $0.kind == "ggml" }
        #expect(!fixtures.isEmpty)
        for fixture in fixtures {
            let expected = try QuantFixtures.bytes(fixture.encoded)
            let encoded = try QuantFixtures.encode(format, fixture)
            #expect(encoded.count == expected.count)
            let rowBytes = format.rowBytes(columns: fixture.columns)!
            for r in 0..<fixture.rows {
                let range = (r * rowBytes)..<((r + 1) * rowBytes)
                let differing = range.filter { encoded[$0] != expected[$0] }
                #expect(differing.isEmpty, "\(fixture) row \(r): \(differing.count) bytes differ, first in block \(((differing.first ?? range.lowerBound) - range.lowerBound) / format.bytesPerBlock)")
            }
        }
    }

    /// The round trip's error is ggml's (the fixture's measured RMSE: same bytes, so equal
    /// up to the order of the double-precision sums), and more bits per weight within a
    /// family of encoders means less error on the same rows.
    @Test("encode → decode error is ggml's and falls with the bit width")
    func roundTripError() throws {
        var measured: [BlockFormat: Double] = [:]
        for format in BlockFormat.allCases where format.canQuantize {
            let fixture = try #require(try QuantFixtures.format(format).fixtures.first { $0.input == "input.f32" && $0.imatrix == nil })
            let input = try QuantFixtures.floats("input.f32")
            let decoded = QuantFixtures.decode(format, try QuantFixtures.encode(format, fixture), count: input.count)
            let error = QuantFixtures.relativeRMSE(decoded, input)
            let ggml = try #require(fixture.relativeRmse)
            #expect(abs(error - ggml) <= 1e-12 * ggml, "\(format): \(error) vs ggml's \(ggml)")
            measured[format] = error
        }
        let families: [[BlockFormat]] = [[.q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_0], [.q4_0, .q5_0, .q8_0], [.q4_1, .q5_1],
                                         [.tq1_0, .iq4_xs, .q5_K], [.iq4_nl, .q5_0]]
        for family in families {
            #expect(family == family.sorted { $0.bitsPerWeight < $1.bitsPerWeight }, "\(family) in bit-width order")
            for (fewer, more) in zip(family, family.dropFirst()) {
                #expect(measured[fewer]! > measured[more]!, "\(fewer) (\(fewer.bitsPerWeight) bits) vs \(more) (\(more.bitsPerWeight) bits)")
            }
        }
    }

    @Test("without an encoder, quantize stops with the format's name", arguments: BlockFormat.allCases.filter { !$0.canQuantize })
    func noEncoder(format: BlockFormat) async {
        await #expect(processExitsWith: .failure) { [format] in
            let x = [Float](repeating: 1, count: format.blockSize)
            var out = [UInt8](repeating: 0, count: format.bytesPerBlock)
            x.withUnsafeBufferPointer { x in out.withUnsafeMutableBytes { format.quantize(x, into: $0) } }
        }
    }

    @Test("WeightMatrix reads, widens, slices and (where it can) encodes every format", arguments: BlockFormat.allCases)
    func weightMatrices(format: BlockFormat) throws {
        for fixture in try QuantFixtures.format(format).fixtures where fixture.decoded != nil {
            let encoded = try QuantFixtures.bytes(fixture.encoded), expected = try QuantFixtures.floats(fixture.decoded!)
            try encoded.withUnsafeBytes { raw in
                let matrix = WeightMatrix(rows: fixture.rows, columns: fixture.columns, quantized: format, base: raw.baseAddress!, owner: nil)
                #expect(matrix.blockFormat == format && matrix.byteCount == encoded.count)
                #expect(QuantFixtures.differing(matrix.floatValues(), expected).isEmpty, "\(fixture)")
                let slice = matrix.rows(1..<fixture.rows)
                #expect(QuantFixtures.differing(slice.floatValues(), Array(expected[fixture.columns...])).isEmpty, "\(fixture) rows 1…")
                guard format.canQuantize, let input = fixture.input, fixture.imatrix == nil else { return }
                let dense = WeightMatrix(rows: fixture.rows, columns: fixture.columns, float32: try QuantFixtures.floats(input))
                let quantized = dense.quantized(format)
                let bytes = Array(UnsafeRawBufferPointer(start: quantized.base, count: quantized.byteCount))
                #expect(bytes.count == encoded.count && zip(bytes, encoded).allSatisfy { $0 == $1 }, "\(fixture) quantized")
                let rowBytes = format.rowBytes(columns: fixture.columns)!
                var part = [UInt8](repeating: 0, count: 2 * rowBytes)
                part.withUnsafeMutableBytes { dense.encodeRows(2..<4, as: format, into: $0.baseAddress!) }
                #expect(zip(part, encoded[(2 * rowBytes)...]).allSatisfy { $0 == $1 }, "\(fixture) encodeRows 2..<4")
            }
        }
    }
}
