import Foundation
import JindouCoordinator
import JindouModel
import JindouPlacement
import JindouTestSupport
import Testing

/// A way to spread experts over workers.
enum Layout: String, CaseIterable, Sendable, CustomStringConvertible {
    case oneWorker, twoContiguous, threeRoundRobin, threeUneven, threeWithReplicas

    var description: String { rawValue }

    /// Each worker's `--experts` spec and the coordinator's placement choice.
    func plan(fixture: String) throws -> (specs: [String], placement: PlacementChoice) {
        switch self {
        case .oneWorker: return (["all"], .fromWorkers)
        case .twoContiguous: return (["contiguous:0/2", "contiguous:1/2"], .contiguous)
        case .threeRoundRobin: return (["round-robin:0/3", "round-robin:1/3", "round-robin:2/3"], .roundRobin)
        // Deliberately uneven: 5, 1 and 2 of the 8 experts per layer, from a placement file.
        case .threeUneven:
            let file = PlacementFile(version: 4, workers: ["w0", "w1", "w2"], shards: [
                .init(worker: "w0", experts: "0-4", layers: nil),
                .init(worker: "w1", experts: "5", layers: nil),
                .init(worker: "w2", experts: "6-7", layers: nil),
            ])
            let path = Scratch.directory + "placement-\(UUID().uuidString).json"
            try JSONEncoder().encode(file).write(to: URL(fileURLWithPath: path))
            return (["0-4", "5", "6-7"], .file(path))
        // Experts 0-3 on two workers each: tokens are split over the replicas.
        case .threeWithReplicas: return (["0-3", "0-5", "4-7"], .fromWorkers)
        }
    }
}

/// DESIGN invariant 1, first half: for any placement and number of workers, the cluster's
/// logits equal the single-process engine's (≤ 1e-5, f32 on the wire), with real worker
/// processes on loopback.
@Suite("Cluster equals the single-process engine", .serialized)
struct ClusterEqualsEngineTests {
    static let arguments: [(String, Layout)] = ["qwen3-moe-tiny", "glm4-moe-tiny"].flatMap { fixture in
        Layout.allCases.map { (fixture, $0) }
    } + [
        // DeepSeek-V3 family (MLA on the coordinator; 16-24 experts, so the layouts that
        // do not assume 8): q-LoRA + YaRN, FP8 experts on the workers, no-q-LoRA sharded
        // checkpoint with MTP tensors, Kimi-K2's model_type.
        ("deepseek-v3-tiny", .oneWorker), ("deepseek-v3-tiny", .twoContiguous), ("deepseek-v3-tiny", .threeRoundRobin),
        ("deepseek-v3-tiny-fp8", .threeRoundRobin), ("deepseek-v3-tiny-noq", .twoContiguous),
        ("kimi-k2-tiny", .threeRoundRobin),
        // Qwen3-VL-MoE: vision tower on the coordinator, fused experts on the workers.
        ("qwen3-vl-moe-tiny", .oneWorker), ("qwen3-vl-moe-tiny", .threeUneven),
        // Kimi-K2.5: MoonViT on the coordinator, the Hub's language_model.* experts on the workers.
        ("kimi-k25-tiny", .oneWorker), ("kimi-k25-tiny", .threeRoundRobin),
        // Qwen3-Next: Gated DeltaNet and its recurrent state on the coordinator.
        ("qwen3-next-tiny", .oneWorker), ("qwen3-next-tiny", .threeRoundRobin),
        // Qwen3.5-MoE: the same with split projections, M-RoPE and the vision tower.
        ("qwen35-moe-tiny", .oneWorker), ("qwen35-moe-tiny", .threeUneven),
        // Kimi-Linear: Kimi Delta Attention and rotary-free MLA on the coordinator, Mixtral names on the workers.
        ("kimi-linear-tiny", .oneWorker), ("kimi-linear-tiny", .threeRoundRobin),
        // Ling-3.0-Flash: Ling's KDA and the gated MLA on the coordinator.
        ("ling-hybrid-tiny", .oneWorker), ("ling-hybrid-tiny", .threeUneven),
        // MiniMax-M2: whole-projection q/k norm, Mixtral-style expert names on the workers.
        ("minimax-m2-tiny", .oneWorker), ("minimax-m2-tiny", .threeRoundRobin),
        // dots.llm1: Qwen3 attention with o_proj bias, DeepSeek-V3 grouped router, shared expert.
        ("dots1-tiny", .twoContiguous), ("dots1-tiny", .threeRoundRobin), ("dots1-tiny-sliding", .threeUneven),
        // Hunyuan: q/k norm after rotary, `gate.wg` router, `shared_mlp`.
        ("hunyuan-moe-tiny", .threeWithReplicas),
        // GLM-4.7-Flash: latent attention on the coordinator, GLM experts on the workers.
        ("glm4-moe-lite-tiny", .oneWorker), ("glm4-moe-lite-tiny", .threeRoundRobin),
        // ERNIE-4.5: softmax router with a [1, E] selection bias, interleaved rotary, tied embeddings.
        ("ernie45-moe-tiny", .twoContiguous), ("ernie45-moe-tiny", .threeUneven),
        // K-EXAONE: sliding layers with rotary, global NoPE layers.
        ("exaone-moe-tiny", .threeRoundRobin),
        // gpt-oss: sinks on the coordinator; biased interleaved experts with the clamped SwiGLU,
        // float and MXFP4 (kept MXFP4 on the workers).
        ("gpt-oss-tiny", .oneWorker), ("gpt-oss-tiny", .threeRoundRobin), ("gpt-oss-tiny-mxfp4", .threeUneven),
        // Trinity: sandwich norms and the gated attention output on the coordinator.
        ("afmoe-tiny", .twoContiguous), ("afmoe-tiny", .threeWithReplicas),
        // DeepSeek-V3.2: the sparse-attention indexer and its key cache on the coordinator.
        ("deepseek-v32-tiny", .oneWorker), ("deepseek-v32-tiny", .threeRoundRobin),
        // GLM-5: the same with shared selections carried between layers on the coordinator.
        ("glm-moe-dsa-tiny", .oneWorker), ("glm-moe-dsa-tiny", .threeUneven),
        // LongCat-Flash: the shortcut MoE dispatched across the second sub-block; the
        // zero-computation experts applied on the coordinator, never dispatched.
        ("longcat-flash-tiny", .oneWorker), ("longcat-flash-tiny", .threeRoundRobin),
    ]

    @Test(arguments: arguments)
    func logitsAndGreedyTokensMatch(fixture: String, layout: Layout) async throws {
        let (specs, placement) = try layout.plan(fixture: fixture)
        let workers = try specs.enumerated().map { try WorkerProcess(fixture: fixture, experts: $1, name: "w\($0)") }
        defer { workers.forEach { $0.stop() } }
        let coordinator = try await Coordinator.start(
            .init(modelDirectory: Fixtures.path(fixture), workers: workers.map(\.endpoint), placement: placement, prefault: false),
            logger: testLogger)
        defer { Task { await coordinator.pool.closeAll() } }
        let single = try await EngineCache.shared.engine(fixture)
        let (golden, tensors) = try GoldenSet(fixture: fixture, stem: "golden").load()

        // Linear attention amplifies rounding ~100× on these random-weight fixtures (Qwen3NextTests):
        // the workers' different expert sum order moves its logits by up to ~1e-5; the bound
        // against transformers is 1e-3 for them.
        let sensitive = single.description.hasRecurrentState
        let engineBound: Float = sensitive ? 1e-4 : 1e-5, referenceBound: Float = sensitive ? 1e-3 : 1e-4
        for c in golden.cases {
            let images = try c.multimodal(tensors, engine: coordinator.engine)
            let expected = try await single.promptLogits(c.promptIDs, expertsPerToken: c.experts,
                                                         multimodal: try c.multimodal(tensors, engine: single))
            let actual = try await coordinator.engine.promptLogits(c.promptIDs, expertsPerToken: c.experts, multimodal: images)
            for (position, (a, e)) in zip(actual, expected).enumerated() {
                let difference = maxAbsDifference(a, e)
                #expect(difference <= engineBound, "\(fixture) \(layout) case \(c.name) position \(position): \(difference)")
            }
            // And transformers itself (fp32 goldens), not only through the engine.
            if golden.dtype == "float32" {
                let reference = try rows(tensors.tensor("case\(c.index).prefill_logits"))
                #expect(actual.count == reference.count)
                for (position, (a, e)) in zip(actual, reference).enumerated() {
                    let difference = maxAbsDifference(a, e)
                    #expect(difference <= referenceBound, "\(fixture) \(layout) case \(c.name) position \(position) vs transformers: \(difference)")
                }
            }
            var request = GenerationRequest(promptTokenIDs: c.promptIDs, maxNewTokens: c.maxNewTokens,
                                            expertsPerToken: c.experts, stopTokenIDs: [])
            request.multimodal = images
            let clusterTokens = try await coordinator.engine.generate(request).tokenIDs
            #expect(clusterTokens == c.greedyNewTokens, "\(fixture) \(layout) case \(c.name)")
        }
    }

    /// Workers started with `--expert-format q8_0` compute exactly what the single-process
    /// engine computes with its experts re-encoded the same way.
    @Test func quantisedWorkersEqualTheQuantisedEngine() async throws {
        let fixture = "qwen3-moe-tiny"
        let workers = try (0..<2).map {
            try WorkerProcess(fixture: fixture, experts: "contiguous:\($0)/2", name: "w\($0)", extraArguments: ["--expert-format", "q8_0"])
        }
        defer { workers.forEach { $0.stop() } }
        let coordinator = try await Coordinator.start(
            .init(modelDirectory: Fixtures.path(fixture), workers: workers.map(\.endpoint), placement: .contiguous, prefault: false),
            logger: testLogger)
        defer { Task { await coordinator.pool.closeAll() } }
        let single = try InferenceEngine.load(directory: Fixtures.path(fixture), expertFormat: .q8_0)
        let fp32 = try await EngineCache.shared.engine(fixture)
        let (golden, _) = try GoldenSet(fixture: fixture, stem: "golden").load()
        for c in golden.cases.prefix(4) {
            let expected = try await single.promptLogits(c.promptIDs, expertsPerToken: c.experts)
            let actual = try await coordinator.engine.promptLogits(c.promptIDs, expertsPerToken: c.experts)
            for (position, (a, e)) in zip(actual, expected).enumerated() {
                #expect(maxAbsDifference(a, e) <= 1e-5, "case \(c.name) position \(position)")
            }
            // And the workers really hold Q8_0 experts: the fp32 engine differs.
            let unquantised = try await fp32.promptLogits(c.promptIDs, expertsPerToken: c.experts)
            #expect(zip(actual, unquantised).contains { maxAbsDifference($0, $1) > 1e-4 }, "case \(c.name)")
        }
    }

    @Test func workersMapOnlyTheirShard() async throws {
        // Uneven shards: each worker's mapping of the checkpoint file is its experts' bytes
        // (rounded to pages per mapping), not the file.
        let fixture = "qwen3-moe-tiny"
        let checkpoint = try Checkpoint(directory: Fixtures.path(fixture))
        let description = try ModelDescription(checkpoint: checkpoint)
        let file = checkpoint.path(of: "model.safetensors")
        let fileBytes = try FileManager.default.attributesOfItem(atPath: file)[.size] as! Int
        let expertBytes = 3 * description.hiddenSize * description.moeIntermediateSize * 4
        for (spec, experts) in [("0", 1), ("0-3", 4), ("all", 8)] {
            let worker = try WorkerProcess(fixture: fixture, experts: spec, name: "rss-\(experts)")
            defer { worker.stop() }
            let mapped = try worker.mappedBytes(of: file)
            let shardBytes = experts * description.sparseLayers.count * expertBytes
            #expect(mapped >= shardBytes, "\(spec): mapped \(mapped) < shard \(shardBytes)")
            #expect(mapped <= shardBytes + 2 * 4096 * experts * description.sparseLayers.count * 3,
                    "\(spec): mapped \(mapped) for a shard of \(shardBytes)")
            if experts < 8 { #expect(mapped < fileBytes / 2) }
        }
    }
}
