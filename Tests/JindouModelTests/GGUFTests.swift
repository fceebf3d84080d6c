import Foundation
import JindouModel
import JindouNumerics
import JindouTestSupport
import Testing

/// The GGUF reader against a file the `gguf` package's GGUFWriter wrote
/// (tools/fixture_quants.py): metadata of every type, and F32, F16, BF16, Q8_0 and stacked
/// Q4_K tensors equal to the fixture's reference data.
@Suite("GGUF files")
struct GGUFTests {
    let path = Fixtures.path("quants/small.gguf")

    static func floats(_ name: String) throws -> [Float] {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("quants/" + name)))
        return data.withUnsafeBytes { raw in (0..<(data.count / 4)).map { Float(bitPattern: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) } }
    }

    @Test func readsMetadata() throws {
        let file = try GGUFFile(path: path)
        #expect(file.version == 3)
        #expect(file.metadata["general.architecture"] == .string("qwen3moe"))
        #expect(file.metadata["qwen3moe.block_count"]?.integer == 2)
        #expect(file.metadata["qwen3moe.rope.freq_base"]?.double == 1_000_000)
        #expect(file.metadata["jindou.flag"] == .bool(true))
        #expect(file.metadata["jindou.negative"]?.integer == -7)
        #expect(file.metadata["jindou.big"]?.integer == 1 << 40)
        #expect(file.metadata["jindou.double"]?.double == 0.1)
        #expect(file.metadata["jindou.text"]?.string == "Grüße, 筋斗")
        #expect(file.metadata["jindou.tokens"]?.array?.compactMap(\.string) == ["a", "bc", "<|im_end|>"])
        #expect(file.metadata["jindou.ints"]?.array?.compactMap(\.integer) == [1, -2, 3])
        #expect(file.tensors.map(\.name) == ["f32.weight", "f16.weight", "bf16.weight", "q8_0.weight", "blk.0.ffn_gate_exps.weight"])
        #expect(file.tensor("blk.0.ffn_gate_exps.weight")?.dimensions == [1024, 3, 2])
    }

    /// Model files are often symbolic links (a download cache, a benchmark directory).
    @Test func opensThroughASymbolicLink() throws {
        let link = Scratch.directory + "jindou-gguf-link-\(getpid()).gguf"
        try? FileManager.default.removeItem(atPath: link)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: path)
        defer { try? FileManager.default.removeItem(atPath: link) }
        let file = try GGUFFile(path: link)
        #expect(file.tensors.count == (try GGUFFile(path: path)).tensors.count)
        #expect(try file.matrix("f32.weight").floatValues() == (try GGUFFile(path: path)).matrix("f32.weight").floatValues())
    }

    @Test func readsTensors() throws {
        let file = try GGUFFile(path: path)
        let input = try Self.floats("input.f32")
        let q8 = try Self.floats("q8_0.dequantized.f32"), q4 = try Self.floats("q4_k.dequantized.f32")
        func rows(_ source: [Float], _ rows: Range<Int>, columns: Int, stride: Int = 1024) -> [Float] {
            rows.flatMap { source[($0 * stride)..<($0 * stride + columns)] }
        }
        #expect(try file.matrix("f32.weight").floatValues() == rows(input, 0..<2, columns: 64))
        #expect(try file.matrix("f16.weight").floatValues() == rows(input, 2..<4, columns: 64).map { Float(Float16($0)) })
        let bf16 = rows(input, 4..<6, columns: 64).map { Float(bitPattern: $0.bitPattern & 0xFFFF_0000) }
        #expect(try file.matrix("bf16.weight").floatValues() == bf16)
        let q8Matrix = try file.matrix("q8_0.weight")
        #expect(q8Matrix.blockFormat == .q8_0 && q8Matrix.rows == 3 && q8Matrix.columns == 1024)
        #expect(q8Matrix.floatValues() == rows(q8, 0..<3, columns: 1024))
        for expert in 0..<2 {
            let m = try file.matrix("blk.0.ffn_gate_exps.weight", slice: expert)
            #expect(m.blockFormat == .q4_K && m.rows == 3)
            #expect(m.floatValues() == rows(q4, (3 * expert)..<(3 * expert + 3), columns: 1024))
        }
        #expect(throws: GGUFError.self) { try file.matrix("blk.0.ffn_gate_exps.weight", slice: 2) }
        #expect(throws: GGUFError.self) { try file.matrix("missing.weight") }
    }

    @Test func damagedFilesFailWithTheReason() throws {
        let good = try Data(contentsOf: URL(fileURLWithPath: path))
        let scratch = Scratch.directory + "jindou-gguf-\(UUID().uuidString).gguf"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        func reason(_ data: Data) -> String {
            do {
                try data.write(to: URL(fileURLWithPath: scratch))
                _ = try GGUFFile(path: scratch)
                return "opened"
            } catch let error as GGUFError {
                return error.reason
            } catch {
                return "\(error)"
            }
        }
        #expect(reason(good.prefix(good.count - 100)).contains("past the end of the file"))
        #expect(reason(good.prefix(40)).contains("truncated"))
        var magic = good
        magic[0] = UInt8(ascii: "X")
        #expect(reason(magic).contains("not a GGUF file"))
        var version = good
        version[4] = 9
        #expect(reason(version).contains("version 9"))
        #expect(reason(Data([0x47, 0x47])).contains("too short"))
        // Every truncation point fails with a reason (the last tensor ends at the end of the file).
        for cut in stride(from: 24, to: good.count, by: 97) {
            let r = reason(good.prefix(cut))
            #expect(r != "opened" && !r.isEmpty, "cut at \(cut)")
        }
    }
}
