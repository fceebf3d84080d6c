import Crypto
import Foundation
import JindouModel
import JindouTestSupport
import Testing

/// The GGUF files users download, as llama.cpp makes them (tools/fixture_gguf_mixes.py:
/// llama.cpp's converter, llama-imatrix, llama-quantize and llama-gguf-split on
/// transformers-written checkpoints) and llama.cpp's own logits for them.
struct GGUFMixes: Sendable {
    struct Manifest: Decodable, Sendable {
        let checkpoints: [String: Checkpoint]
        let files: [File]
    }

    struct Checkpoint: Decodable, Sendable {
        let committed: Bool
        let safetensorsSha256: [String: String]
        let prompts: [Prompt]
    }

    struct Prompt: Decodable, Sendable {
        let name: String
        let promptIds: [Int]
        let index: Int
    }

    struct File: Decodable, Sendable, CustomStringConvertible {
        let file: String
        let checkpoint: String
        let mix: String
        let imatrix: String?
        let tensorTypes: [String: TypeCount]
        let tensors: [String: String]
        let logits: Logits
        let cases: [Case]
        var description: String { file }
    }

    struct TypeCount: Decodable, Sendable {
        let count: Int
        let bytes: Int
    }

    struct Logits: Decodable, Sendable {
        let file: String
        let shape: [Int]
    }

    struct Case: Decodable, Sendable {
        let prompt: Int
        let greedyTokens: [Int]
        let greedyMargins: [Double]
        /// llama.cpp's own max |Δlogit| from float64 transformers on the weights dequantised
        /// from the file: how far ggml's 8-bit activation rounding moves this case.
        let exactMaxAbs: Double
    }

    static let manifest: Manifest = {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let data = try! Data(contentsOf: URL(fileURLWithPath: Fixtures.path("gguf-mixes/manifest.json")))
        return try! decoder.decode(Manifest.self, from: data)
    }()

    static var files: [File] { manifest.files }

    static func path(_ name: String) -> String { Fixtures.path("gguf-mixes/" + name) }

    /// llama.cpp's last-position logits of each prompt.
    static func logits(_ file: File) throws -> [[Float]] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path(file.logits.file)))
        let values = data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        let (rows, vocabulary) = (file.logits.shape[0], file.logits.shape[1])
        precondition(values.count == rows * vocabulary)
        return (0..<rows).map { Array(values[($0 * vocabulary)..<(($0 + 1) * vocabulary)]) }
    }
}

/// Jindou on llama.cpp's files of every quantisation mix: it loads them (every ggml type,
/// mixed per tensor; a split model), computes llama.cpp's logits, writes llama-quantize's
/// bytes, and refuses damaged split models by name.
///
/// Tolerance, from measurements (tools/README.md): both round every matmul's activations to
/// 8-bit blocks as ggml does, so they agree to ~1e-6 (float summation order) unless one
/// activation lands on the other side of a rounding step in one of them — a 1-ulp difference
/// upstream (e.g. an exp) moves it a whole step. Measured on these files: 103 of 120 cases
/// within 1e-5; the others within 1.33× of llama.cpp's own distance from exact math on the
/// same weights (0.036–0.088, recorded per case). The test allows 2× that distance per case,
/// and requires 75 % of the cases within 1e-5 — which fails if any kernel stops rounding as
/// ggml rounds (then every case is off by ~0.04).
@Suite("GGUF files of every llama-quantize mix against llama.cpp", .serialized)
struct GGUFMixesTests {
    @Test("every file: the type census, and last logits and greedy tokens as llama.cpp's", arguments: GGUFMixes.files)
    func equalsLlamaCpp(file: GGUFMixes.File) async throws {
        let path = GGUFMixes.path(file.file)
        // The census Jindou reads is the one llama-quantize wrote.
        let inspection = GGUFInspection(try GGUFFile(path: path))
        #expect(Dictionary(uniqueKeysWithValues: inspection.types.map { ($0.type, $0.tensors) })
                == file.tensorTypes.mapValues(\.count))
        #expect(Dictionary(uniqueKeysWithValues: inspection.types.map { ($0.type, $0.bytes) })
                == file.tensorTypes.mapValues(\.bytes))
        #expect(inspection.unreadableTensors.isEmpty, "\(inspection.unreadableTensors)")
        let gguf = try GGUFFile(path: path)
        for tensor in gguf.tensors { #expect(file.tensors[tensor.name] == tensor.type.name, "\(tensor.name)") }

        let engine = try InferenceEngine.load(directory: path)
        let reference = try GGUFMixes.logits(file)
        let prompts = try #require(GGUFMixes.manifest.checkpoints[file.checkpoint]).prompts
        for prompt in prompts {
            let recorded = try #require(file.cases.first { $0.prompt == prompt.index })
            let logits = try await engine.promptLogits(prompt.promptIds).last!
            let difference = Double(maxAbsDifference(logits, reference[prompt.index]))
            #expect(difference <= 2 * recorded.exactMaxAbs,
                    "\(file.file) \(prompt.name): max |Δlogit| \(difference) vs llama.cpp (its own rounding: \(recorded.exactMaxAbs))")
            // Greedy tokens agree while llama.cpp's choice is clearer than both rounding errors.
            let generated = try await engine.generate(GenerationRequest(
                promptTokenIDs: prompt.promptIds, maxNewTokens: recorded.greedyTokens.count, stopTokenIDs: [])).tokenIDs
            let clear = recorded.greedyMargins.firstIndex { $0 < 4 * recorded.exactMaxAbs } ?? recorded.greedyTokens.count
            #expect(Array(generated.prefix(clear)) == Array(recorded.greedyTokens.prefix(clear)), "\(file.file) \(prompt.name)")
        }
    }

    /// The share of cases within 1e-5 across every file (see the suite's comment).
    @Test("most cases equal llama.cpp to 1e-5") func mostCasesAreExact() async throws {
        var tight = 0, total = 0
        for file in GGUFMixes.files {
            let engine = try InferenceEngine.load(directory: GGUFMixes.path(file.file))
            let reference = try GGUFMixes.logits(file)
            for prompt in GGUFMixes.manifest.checkpoints[file.checkpoint]!.prompts {
                let logits = try await engine.promptLogits(prompt.promptIds).last!
                if maxAbsDifference(logits, reference[prompt.index]) <= 1e-5 { tight += 1 }
                total += 1
            }
        }
        print("GGUF mixes: \(tight) of \(total) cases equal llama.cpp within 1e-5")
        #expect(Double(tight) >= 0.75 * Double(total), "\(tight) of \(total) cases within 1e-5")
    }

    /// `jindouctl quantize --to MIX` of the checkpoint llama.cpp's files were made from writes
    /// every tensor byte for byte as llama-quantize did (same types per tensor, same encoders),
    /// with the same importance matrix where llama-quantize had one (`--imatrix`).
    @Test("jindouctl quantize --to MIX writes llama-quantize's bytes",
          arguments: ["Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q4_K_M", "Q4_K_S", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q3_K_M", "Q3_K_S", "Q2_K",
                      "IQ4_XS", "IQ4_NL"])
    func quantizeWritesLlamaQuantizesBytes(mix: String) throws {
        let file = try #require(GGUFMixes.files.first { $0.checkpoint == "qwen3-moe-w256" && $0.mix == mix })
        let checkpoint = Fixtures.path("qwen3-moe-w256")
        // The committed checkpoint is the one the manifest's files were made from.
        let recorded = try #require(GGUFMixes.manifest.checkpoints["qwen3-moe-w256"])
        #expect(recorded.committed)
        let weights = try Data(contentsOf: URL(fileURLWithPath: checkpoint + "/model.safetensors"))
        #expect(SHA256.hash(data: weights).map { String(format: "%02x", $0) }.joined() == recorded.safetensorsSha256["model.safetensors"])

        let out = Scratch.directory + "jindou-mix-\(mix)-\(UUID().uuidString).gguf"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let run = try Executable("jindouctl").run(["quantize", "--to", mix, "--model", checkpoint, "--out", out]
                                                  + (file.imatrix.map { ["--imatrix", GGUFMixes.path($0)] } ?? []))
        #expect(run.status == 0, "\(run.stderr)")
        let ours = try GGUFFile(path: out), theirs = try GGUFFile(path: GGUFMixes.path(file.file))
        #expect(ours.tensors.map(\.name).sorted() == theirs.tensors.map(\.name).sorted())
        for tensor in theirs.tensors {
            guard let mine = ours.tensor(tensor.name) else { continue }
            #expect(mine.type == tensor.type && mine.dimensions == tensor.dimensions, "\(tensor.name)")
            #expect(Array(try ours.bytes(of: mine)) == Array(try theirs.bytes(of: tensor)), "\(mix) \(tensor.name): bytes differ")
        }
        #expect(ours.metadata["general.file_type"] == theirs.metadata["general.file_type"])
    }

    /// llama-quantize's per-tensor rules (`QuantizationMix`) choose, for every mix file made
    /// without overrides, the types llama-quantize chose.
    @Test("llama-quantize's per-tensor rules, on every file of a mix Jindou writes")
    func mixRulesMatch() throws {
        for file in GGUFMixes.files {
            guard let mix = QuantizationMix(name: file.mix) else { continue }
            let gguf = try GGUFFile(path: GGUFMixes.path(file.file))
            let arch = try #require(gguf.metadata["general.architecture"]?.string)
            func n(_ key: String) -> Int? { gguf.metadata["\(arch).\(key)"]?.integer }
            let model = QuantizationMix.Model(layers: n("block_count")!, experts: n("expert_count")!,
                                              heads: n("attention.head_count")!, keyValueHeads: n("attention.head_count_kv") ?? n("attention.head_count")!)
            let types = try mix.types(of: gguf.tensors.map { .init(name: $0.name, dimensions: $0.dimensions) }, model: model,
                                      importance: file.imatrix != nil)
            for (tensor, type) in zip(gguf.tensors, types) {
                #expect((type ?? tensor.type) == tensor.type, "\(file.file) \(tensor.name): llama-quantize \(tensor.type), Jindou's rules \(type.map(\.name) ?? "keep")")
            }
        }
    }
}

/// A model split by llama-gguf-split: loaded from its first part, equal to the unsplit file;
/// a missing part, a part of another split, inconsistent split metadata, a truncated part
/// and a non-first part are refused naming the file.
@Suite("GGUF split models")
struct GGUFSplitTests {
    static let parts = (1...3).map { "qwen3-moe-w256-UD-IQ1_S-0000\($0)-of-00003.gguf" }

    func loadError(_ path: String) -> String {
        do {
            _ = try InferenceEngine.load(directory: path)
            return "loaded"
        } catch {
            return "\(error)"
        }
    }

    /// The three parts copied into a fresh directory (so they can be damaged), first part's path.
    func copy(_ change: (String, inout Data) -> Void = { _, _ in }) throws -> (directory: String, first: String) {
        let directory = Scratch.directory + "jindou-split-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for part in Self.parts {
            var data = try Data(contentsOf: URL(fileURLWithPath: GGUFMixes.path(part)))
            change(part, &data)
            if !data.isEmpty { try data.write(to: URL(fileURLWithPath: directory + "/" + part)) }
        }
        return (directory, directory + "/" + Self.parts[0])
    }

    @Test func splitModelLoadsFromItsFirstPart() throws {
        let gguf = try GGUFFile(path: GGUFMixes.path(Self.parts[0]))
        #expect(gguf.parts.count == 3)
        #expect(Set(gguf.tensors.map(\.part)) == [0, 1, 2])
        let error = loadError(GGUFMixes.path(Self.parts[1]))
        #expect(error.contains("this is part 2 of 3 of a split model; open its first part"), "\(error)")
    }

    @Test func damagedSplitsAreRefusedByName() throws {
        // A missing part.
        let (missing, first) = try copy { name, data in if name == Self.parts[1] { data = Data() } }
        defer { try? FileManager.default.removeItem(atPath: missing) }
        let noPart = loadError(first)
        #expect(noPart.contains("split part 2 of 3 is missing") && noPart.contains(Self.parts[1]), "\(noPart)")

        // A truncated part.
        let (cut, cutFirst) = try copy { name, data in if name == Self.parts[2] { data = data.prefix(data.count - 4096) } }
        defer { try? FileManager.default.removeItem(atPath: cut) }
        let truncated = loadError(cutFirst)
        #expect(truncated.contains(Self.parts[2]) && truncated.contains("past the end of the file"), "\(truncated)")

        // A part that says it belongs elsewhere: split.no of part 3 rewritten to 1 (u16 after its key).
        let (other, otherFirst) = try copy { name, data in
            guard name == Self.parts[2], let key = data.range(of: Data("split.no".utf8)) else { return }
            data[key.upperBound + 4] = 1  // the value after the u32 type tag
        }
        defer { try? FileManager.default.removeItem(atPath: other) }
        let mismatched = loadError(otherFirst)
        #expect(mismatched.contains(Self.parts[2]) && mismatched.contains("expected part 3 of 3"), "\(mismatched)")

        // The first part's tensor count not matching the parts.
        let (count, countFirst) = try copy { name, data in
            guard name == Self.parts[0], let key = data.range(of: Data("split.tensors.count".utf8)) else { return }
            data[key.upperBound + 4] &+= 1
        }
        defer { try? FileManager.default.removeItem(atPath: count) }
        let counted = loadError(countFirst)
        #expect(counted.contains("split.tensors.count is"), "\(counted)")
    }
}
