import Foundation
import JindouAdmin
import JindouModel
import JindouTestSupport
import Testing

/// llama.cpp's files of mixed quantisation types through a 2-worker `jindoud local`: the
/// workers hold experts in the file's types (IQ2_XXS, MXFP4, Q5_0 fallbacks…), and the
/// cluster computes what the single-process engine computes — which equals llama.cpp's
/// logits (GGUFMixesTests). A split model's workers map only their experts' ranges of
/// each part.
@Suite("GGUF mixes through a cluster", .serialized)
struct GGUFClusterTests {
    static let files = ["qwen3-moe-w256-Q4_K_M.gguf", "qwen3-moe-w256-IQ2_XXS.gguf", "qwen3-moe-w256-MXFP4_MOE.gguf",
                        "qwen3-moe-w256-UD-IQ1_S-00001-of-00003.gguf", "deepseek-v3-mixed-Q2_K.gguf"]

    @Test("a 2-worker cluster equals the single-process engine on llama.cpp's files", arguments: files)
    func clusterEqualsEngine(file: String) async throws {
        let fixture = "gguf-mixes/" + file
        let engine = try InferenceEngine.load(directory: Fixtures.path(fixture))
        let cluster = try LocalCluster(fixture: fixture, workers: 2)
        defer { cluster.stop() }
        let client = try cluster.client
        let prompts = [[268], [107, 254, 312, 135, 46, 169], Array(18..<58)]
        for ids in prompts {
            let body = GenerationRequestBody(promptIDs: ids, maxNewTokens: 6, ignoreEOS: true, emitLogits: true)
            let report = try await client.post("v1/jindou/generate", body, as: GenerationReport.self)
            let expected = try await engine.generate(body.request)
            #expect(report.tokenIDs == expected.tokenIDs, "\(file) prompt of \(ids.count)")
            let difference = maxAbsDifference(report.lastLogits ?? [], expected.lastPromptLogits ?? [])
            #expect(difference <= 1e-5, "\(file) prompt of \(ids.count): max |Δlogit| \(difference)")
        }
    }

    @Test func workersOfASplitModelMapOnlyTheirExperts() throws {
        let parts = (1...3).map { Fixtures.path("gguf-mixes/qwen3-moe-w256-UD-IQ1_S-0000\($0)-of-00003.gguf") }
        let total = try parts.reduce(0) { $0 + (try FileManager.default.attributesOfItem(atPath: $1)[.size] as! Int) }
        let gguf = try GGUFFile(path: parts[0])
        let expertTensors = gguf.tensors.filter { $0.name.contains("_exps.") }
        let experts = try #require(expertTensors.first?.dimensions.last)
        let oneExpert = expertTensors.reduce(0) { $0 + $1.byteCount } / experts
        let worker = try WorkerProcess(fixture: "gguf-mixes/qwen3-moe-w256-UD-IQ1_S-00001-of-00003.gguf", experts: "0", name: "split-0")
        defer { worker.stop() }
        let mapped = try parts.reduce(0) { $0 + (try worker.mappedBytes(of: $1)) }
        #expect(mapped >= oneExpert, "mapped \(mapped) < one expert's \(oneExpert) bytes")
        // Expert 0's slices, each part's header, and page rounding — far from the files' size.
        #expect(mapped < total / 2, "mapped \(mapped) of \(total) bytes")
    }
}
