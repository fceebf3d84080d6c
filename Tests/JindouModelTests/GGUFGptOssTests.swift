import Foundation
import JindouModel
import JindouTestSupport
import Testing

/// gpt-oss as llama.cpp ships it (`gpt-oss` architecture, MXFP4 experts): the file
/// llama.cpp's converter wrote from the gpt-oss-tiny-mxfp4 checkpoint
/// (tools/fixture_gguf.py), read with llama.cpp's meaning, gives llama.cpp's own logits and
/// greedy tokens (`gpt-oss-tiny-mxfp4.llama-cpp.json`).
@Suite("gpt-oss GGUF equals llama.cpp")
struct GGUFGptOssTests {
    static let file = Fixtures.path("gguf/gpt-oss-tiny-mxfp4.gguf")

    @Test func theFileDescribesTheCheckpointsModel() throws {
        let gguf = try GGUFCheckpoint(path: Self.file)
        let d = gguf.description
        let hf = try ModelDescription(checkpoint: Checkpoint(directory: Fixtures.path("gpt-oss-tiny-mxfp4")))
        #expect(d.architecture == .gptOss && d.attention.sinks && d.expertBiases)
        #expect(d.attention.layerWindows == hf.attention.layerWindows)
        #expect(d.attention.ropeScaling == hf.attention.ropeScaling, "the fixture's YaRN has truncate: true, as ggml computes it")
        #expect(d.expertActivation == hf.expertActivation && d.router == hf.router)
        let key = ExpertKey(layer: 1, expert: 3)
        let expert = try #require(try ExpertShard(description: d, checkpoint: gguf, keys: [key]).experts[key])
        #expect(expert.gate.blockFormat == .mxfp4 && !expert.gate.floatActivations, "llama.cpp's MXFP4 × 8-bit activations")
        #expect(expert.upBias?.count == d.moeIntermediateSize && expert.downBias?.count == d.hiddenSize)
        // The same bits as the checkpoint's experts (the converter repacks, Jindou repacks).
        let safetensors = try #require(try ExpertShard(description: hf, checkpoint: Checkpoint(directory: Fixtures.path("gpt-oss-tiny-mxfp4")),
                                                       keys: [key]).experts[key])
        for (a, b) in [(expert.gate, safetensors.gate), (expert.up, safetensors.up), (expert.down, safetensors.down)] {
            #expect(a.floatValues() == b.floatValues())
        }
        #expect(expert.gateBias == safetensors.gateBias && expert.downBias == safetensors.downBias)
    }

    @Test func logitsAndGreedyTokensEqualLlamaCpp() async throws {
        // Both multiply MXFP4 with the same 8-bit activation blocks in integers (observed ≤ 7.2e-7).
        try await LlamaCppGoldens.check(Self.file, tolerance: 1e-4)
    }
}

/// Files llama.cpp's converter wrote whose reference is llama.cpp's own computation on them
/// (`{file}.llama-cpp.json`: the last prompt position's logits and greedy tokens, from
/// tools/fixture_gguf.py with tools/llama_cpp_logits.c).
enum LlamaCppGoldens {
    struct Golden: Decodable {
        struct Case: Decodable {
            let promptIds: [Int]
            let lastLogits: [Float]
            let greedyTokens: [Int]
            let greedyMargins: [Double]
        }
        let cases: [Case]
    }

    static func golden(_ file: String) throws -> Golden {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(Golden.self, from: Data(contentsOf: URL(fileURLWithPath: file.replacingOccurrences(of: ".gguf", with: ".llama-cpp.json"))))
    }

    /// The engine on `file` gives llama.cpp's last logits within `tolerance` and its greedy
    /// tokens up to the first step whose margin is within twice the tolerance.
    static func check(_ file: String, tolerance: Float) async throws {
        let engine = try InferenceEngine.load(directory: file)
        let name = (file as NSString).lastPathComponent
        for c in try golden(file).cases {
            let logits = try await engine.promptLogits(c.promptIds).last!
            let difference = maxAbsDifference(logits, c.lastLogits)
            #expect(difference <= tolerance, "\(name), prompt of \(c.promptIds.count): max |Δlogit| \(difference) vs llama.cpp")
            let generated = try await engine.generate(GenerationRequest(promptTokenIDs: c.promptIds, maxNewTokens: c.greedyTokens.count,
                                                                        stopTokenIDs: [])).tokenIDs
            let clear = c.greedyMargins.firstIndex { $0 < 2 * Double(tolerance) } ?? c.greedyTokens.count
            #expect(clear > 0)
            #expect(Array(generated.prefix(clear)) == Array(c.greedyTokens.prefix(clear)), "\(name), prompt of \(c.promptIds.count)")
        }
    }
}

/// dots.llm1, K-EXAONE, Trinity, GLM-4.7-Flash, Hunyuan-A13B, ERNIE-4.5, DeepSeek-V3.2 and GLM-5 as llama.cpp's converter writes them, read with llama.cpp's
/// meaning: llama.cpp's logits and greedy tokens on the same files. (The files also equal the
/// transformers goldens of their checkpoints: GGUFLoadingTests.)
@Suite("GGUF families equal llama.cpp")
struct GGUFFamiliesEqualLlamaCppTests {
    @Test(arguments: ["dots1-tiny-mha-f32.gguf", "exaone-moe-tiny-f32.gguf", "afmoe-tiny-every4-f32.gguf",
                      "glm4-moe-lite-tiny-lead-f32.gguf", "hunyuan-moe-tiny-128-f32.gguf", "ernie45-moe-tiny-ff64-f32.gguf",
                      "deepseek-v32-tiny-f32.gguf", "glm-moe-dsa-tiny-f32.gguf"])
    func logitsAndGreedyTokensEqualLlamaCpp(file: String) async throws {
        // Both compute in F32 from the same F32 weights (observed ≤ 2e-6).
        try await LlamaCppGoldens.check(Fixtures.path("gguf/" + file), tolerance: 1e-4)
    }
}
