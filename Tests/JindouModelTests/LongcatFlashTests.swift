import Foundation
@testable import JindouModel
import JindouRouting
import JindouTestSupport
import Testing

/// LongCat-Flash (`longcat_flash`) on the transformers-written `longcat-flash-tiny`: two MLA
/// and two dense sub-blocks per layer with the shortcut MoE, 8 routed and 4 zero-computation
/// experts. The shared golden tests run it in the automatic MLA mode (prefill, greedy decode,
/// K ∈ {2, 5}, auto, router choices); here both forms alone, the zero-computation experts,
/// the caches and the refusals.
@Suite("LongCat-Flash: shortcut MoE and zero-computation experts")
struct LongcatFlashTests {
    static let fixture = "longcat-flash-tiny"

    @Test("each MLA form equals transformers", arguments: DeepseekV3Tests.forms)
    func formEqualsTransformers(mode: LatentAttentionMode) async throws {
        try await DeepseekV3Tests().formEqualsTransformers(fixture: Self.fixture, mode: mode)
    }

    @Test func describesShortcutLayersAndZeroExperts() throws {
        let d = try ModelDescription(checkpoint: Checkpoint(directory: Fixtures.path(Self.fixture)))
        #expect(d.architecture == .longcatFlash)
        #expect(d.expertCount == 8 && d.zeroComputationExperts == 4 && d.router.expertCount == 12)
        #expect(d.router.scoring == .softmax && !d.router.normalizeTopK && d.router.routedScalingFactor == 2)
        #expect(d.shortcutSublayers == ShortcutSublayerShape(intermediateSize: 96))
        #expect(d.layerCount == 2 && d.cacheLayerCount == 4)
        // Two latent rows (kv_lora 32 + rope 8) per layer and token.
        #expect(d.keyValueCacheBytesPerToken == 4 * (32 + 8) * MemoryLayout<Float>.size)
        #expect(d.allExperts.count == 2 * 8)  // only routed experts are placed on workers
        let m = try #require(d.latentAttention)
        #expect(abs(m.queryScale - (64.0 / 48).squareRoot()) < 1e-6 && abs(m.latentScale - (64.0 / 32).squareRoot()) < 1e-6)
    }

    /// The router chooses identity experts on these prompts (so the goldens exercise them),
    /// and the split keeps every routed choice and moves the rest to the identity weight.
    @Test func zeroComputationExpertsAreChosenAndKeptOnTheCoordinator() async throws {
        let engine = try await EngineCache.shared.engine(Self.fixture)
        let router = try #require(engine.model.anyRouter)
        var hidden = [Float](repeating: 0, count: 40 * 64)
        var random = SplitMix64(seed: 5)
        for i in hidden.indices { hidden[i] = Float(Int(random.next() % 2001) - 1000) / 1000 }
        let decision = hidden.withUnsafeBufferPointer { router.route(hidden: $0.baseAddress!, tokens: 40) { _ in .configured } }
        let (kept, identity) = decision.splittingIdentityExperts(from: 8)
        #expect(decision.experts.contains { $0 >= 8 } && decision.experts.contains { $0 < 8 })
        #expect(kept.experts.allSatisfy { $0 < 8 } && kept.experts.count == decision.experts.filter { $0 < 8 }.count)
        for t in 0..<40 {
            let zero = (decision.offsets[t]..<decision.offsets[t + 1]).filter { decision.experts[$0] >= 8 }
                .reduce(Float(0)) { $0 + decision.weights[$1] }
            #expect(identity[t] == zero)
        }
    }

    @Test func unsupportedConfigurationsAreRefusedByField() throws {
        var config = try ConfigEditing.config(Self.fixture)
        config["head_dim"] = 16
        #expect(ConfigEditing.refusedField(config) == "head_dim")
        config = try ConfigEditing.config(Self.fixture)
        config["qk_head_dim"] = 30
        #expect(ConfigEditing.refusedField(config) == "qk_head_dim")
        config = try ConfigEditing.config(Self.fixture)
        config["q_lora_rank"] = NSNull()
        #expect(ConfigEditing.refusedField(config) == "q_lora_rank")
    }
}
