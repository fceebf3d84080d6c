import Foundation
import JindouModel
import JindouTestSupport
import Testing

/// An engine over `fixture` (all experts in process) whose model `configure` adjusts first:
/// a form of latent attention, of the delta rule.
func engineVariant(_ fixture: String, _ configure: (inout DecoderModel) -> Void) throws -> InferenceEngine {
    let checkpoint = try Checkpoint(directory: Fixtures.path(fixture))
    let description = try ModelDescription(checkpoint: checkpoint)
    var model = try DecoderModel(description: description, checkpoint: checkpoint)
    configure(&model)
    let experts = try ExpertShard(description: description, checkpoint: checkpoint, keys: description.allExperts)
    return InferenceEngine(model: model, experts: experts)
}

/// n-gram speculation on each case's prompt followed by two repeats of its first six tokens
/// (so drafts exist) gives plain greedy decoding's tokens, and rejects some drafts (so the
/// state's rollback runs).
func expectSpeculationKeepsGreedyOutput(_ engine: InferenceEngine, cases: [Golden.Case], fixture: String) async throws {
    var drafted = 0, accepted = 0
    for c in cases {
        let prompt = c.promptIDs + c.promptIDs.prefix(6) + c.promptIDs.prefix(6)
        let request = GenerationRequest(promptTokenIDs: prompt, maxNewTokens: 16, expertsPerToken: c.experts, stopTokenIDs: [])
        let plain = try await engine.generate(request)
        let speculative = try await engine.generate(request, speculation: SpeculationOptions(mode: .ngram, draftTokens: 4))
        #expect(speculative.tokenIDs == plain.tokenIDs, "\(fixture) \(c.name)")
        drafted += speculative.speculation?.drafted ?? 0
        accepted += speculative.speculation?.accepted ?? 0
    }
    #expect(drafted > accepted, "\(fixture): \(drafted) drafted, \(accepted) accepted: no rollback was exercised")
}
