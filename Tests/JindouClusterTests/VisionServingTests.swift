import Foundation
import JindouAdmin
import JindouModel
import JindouServing
import JindouTemplates
import JindouTestSupport
import Testing

/// Images end to end on `qwen3-vl-moe-tiny` and `kimi-k25-tiny`: files → JindouImages →
/// chat template → tokens → vision tower → text model, against transformers' processor and
/// model goldens; the OpenAI API with a data: URL against `jindouctl generate --image`, and
/// (Kimi-K2.5) against transformers' greedy text.
@Suite("Vision-language serving", .serialized)
struct VisionServingTests {
    static let fixtures = ["qwen3-vl-moe-tiny", "kimi-k25-tiny", "qwen35-moe-tiny"]

    func servingSide(_ fixture: String) async throws -> (InferenceEngine, ServingText, ServingVision) {
        let engine = try await EngineCache.shared.engine(fixture)
        let text = try ServingText(directory: Fixtures.path(fixture), description: engine.description)
        let vision = try #require(try ServingVision(directory: Fixtures.path(fixture), description: engine.description, text: text))
        return (engine, text, vision)
    }

    /// The fixture's messages with image paths made absolute.
    func messages(_ c: Golden.Case, _ fixture: String) throws -> [TemplateValue] {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path(fixture) + "/golden.json"))
        guard case .object(let golden) = try JSONText.parse(data), case .array(let cases)? = golden["cases"],
              case .object(let object)? = cases.first(where: { if case .object(let o) = $0, case .int(c.index)? = o["index"] { true } else { false } }),
              case .array(let messages)? = object["messages"] else { throw HarnessError("no messages in case \(c.index)") }
        return messages.map { message in
            guard case .object(let m) = message, case .array(let parts)? = m["content"] else { return message }
            var copy = m
            copy["content"] = .array(parts.map { part in
                guard case .object(var p) = part, case .string(let path)? = p["image"] else { return part }
                p["image"] = .string(Fixtures.path(fixture) + "/" + path)
                return .object(p)
            })
            return .object(copy)
        }
    }

    @Test("preprocessing equals transformers' processor on the model fixture's images", arguments: fixtures)
    func preprocessing(fixture: String) async throws {
        let (_, _, vision) = try await servingSide(fixture)
        let json = try JSONSerialization.jsonObject(
            with: Data(contentsOf: URL(fileURLWithPath: Fixtures.path(fixture) + "/preprocess.json"))) as! [String: Any]
        let tensors = try SafetensorsFile(path: Fixtures.path(fixture) + "/preprocess.safetensors")
        let images = json["images"] as! [[String: Any]]
        #expect(images.count >= 4)
        for (i, image) in images.enumerated() {
            let file = Fixtures.path(fixture) + "/" + (image["file"] as! String)
            let patches = try vision.patches(try Data(contentsOf: URL(fileURLWithPath: file)), source: file)
            let grid = try tensors.tensor("image\(i).image_grid_thw").int64s().map(Int.init)
            #expect([patches.grid.t, patches.grid.h, patches.grid.w] == grid, "\(file)")
            let expected = try tensors.tensor("image\(i).pixel_values").floats()
            #expect(patches.values.count == expected.count)
            #expect(maxAbsDifference(patches.values, expected) <= 1e-5, "\(file)")
        }
    }

    @Test("chat messages with image files give transformers' prompt tokens, positions and greedy tokens", arguments: fixtures)
    func chatFromFiles(fixture: String) async throws {
        let (engine, text, vision) = try await servingSide(fixture)
        let (golden, tensors) = try GoldenSet(fixture: fixture, stem: "golden").load()
        var withImages = 0
        for c in golden.cases {
            let prompt = try ChatPrompt.build(messages: try messages(c, fixture), text: text, vision: vision, engine: engine,
                                              policy: ImageSourcePolicy(localDirectory: Fixtures.path(fixture)))
            #expect(prompt.tokens == c.promptIDs, "\(c.name): prompt tokens")
            if let multimodal = prompt.multimodal {
                withImages += 1
                let p = c.promptIDs.count
                if engine.description.attention.mropeSection != nil {
                    let expected = try tensors.tensor("case\(c.index).position_ids").int64s().map(Int.init)
                    for axis in 0..<3 {
                        #expect((0..<p).map { multimodal.ropePosition(at: $0)[axis] } == Array(expected[(axis * p)..<((axis + 1) * p)]))
                    }
                } else {  // Kimi-K2.5: plain positions, as transformers passes none
                    #expect((0..<p).allSatisfy { multimodal.ropePosition(at: $0) == SIMD3(repeating: $0) })
                }
            }
            var request = GenerationRequest(promptTokenIDs: prompt.tokens, maxNewTokens: c.maxNewTokens, expertsPerToken: c.experts,
                                            stopTokenIDs: [])
            request.multimodal = prompt.multimodal
            #expect(try await engine.generate(request).tokenIDs == c.greedyNewTokens, "\(c.name)")
        }
        #expect(withImages == golden.cases.filter(\.hasImages).count)
    }

    @Test("image references: data URLs, the local-directory rule, remote URLs refused", arguments: fixtures)
    func imageSources(fixture: String) async throws {
        let (_, _, vision) = try await servingSide(fixture)
        let file = Fixtures.path(fixture) + "/images/rgb-50x37.png"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
        #expect(try vision.load("data:image/png;base64," + bytes.base64EncodedString(), policy: .init()) == bytes)
        #expect(throws: ImageInputError.self) { try vision.load(file, policy: .init()) }  // no directory allowed
        #expect(try vision.load(file, policy: .init(localDirectory: Fixtures.path(fixture))) == bytes)
        #expect(throws: ImageInputError.self) {
            try vision.load(Fixtures.path(fixture) + "/images/../config.json", policy: .init(localDirectory: Fixtures.path(fixture) + "/images"))
        }
        #expect(throws: ImageInputError.self) { try vision.load("https://example.com/cat.png", policy: .init(localDirectory: "/")) }
        #expect(throws: ImageInputError.self) { try vision.load("data:image/png,notbase64", policy: .init()) }
        #expect(throws: ImageInputError.self) { try vision.load("data:image/png;base64," + bytes.base64EncodedString(), policy: .init(maxBytes: 10)) }
        #expect(throws: ImageInputError.self) { try vision.patches(Data("GIF89a-not-supported".utf8), source: "x.gif") }
        #expect(throws: ImageInputError.self) { try vision.patches(bytes.prefix(60), source: "truncated.png") }
    }

    @Test("an image chat over the OpenAI API returns what jindouctl generate --image returns", arguments: fixtures)
    func apiEqualsCommandLine(fixture: String) async throws {
        let image = Fixtures.path(fixture) + "/images/photo-120x180.jpg"
        let prompt = "Describe this picture."
        let ctl = try Executable("jindouctl")
        let local = try ctl.run(["generate", "--model", Fixtures.path(fixture), "--image", image, "--prompt", prompt,
                                 "--max-new-tokens", "8", "--ignore-eos", "--json"])
        #expect(local.status == 0, "\(local.stderr)")
        let report = try JSONSerialization.jsonObject(with: local.stdout) as! [String: Any]
        let expectedText = report["text"] as! String
        #expect((report["token_ids"] as! [Int]).count == 8)

        // The raw answer, to compare with jindouctl generate's (no reasoning split).
        let cluster = try LocalCluster(fixture: fixture, workers: 2, extraArguments: ["--reasoning-parser", "none"])
        defer { cluster.stop() }
        let dataURL = "data:image/jpeg;base64," + (try Data(contentsOf: URL(fileURLWithPath: image))).base64EncodedString()
        let body = """
            {"model": "\(fixture)", "max_tokens": 8, "temperature": 0, "ignore_eos": true,
             "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "\(dataURL)"}},
                                                        {"type": "text", "text": "\(prompt)"}]}]}
            """
        let (status, answer) = try await cluster.post("v1/chat/completions", body)
        #expect(status == 200, "\(answer)")
        guard case .array(let choices)? = answer["choices"], case .object(let choice)? = choices.first,
              case .object(let message)? = choice["message"] else { throw HarnessError("no choices: \(answer)") }
        #expect(message["content"]?.text == expectedText)
        // jindouctl through the coordinator sends the file as a data: URL: same text.
        let remote = try ctl.run(["generate", "--coordinator", cluster.url, "--image", image, "--prompt", prompt,
                                  "--max-new-tokens", "8", "--ignore-eos", "--json"])
        #expect(remote.status == 0, "\(remote.stderr)")
        let remoteReport = try JSONSerialization.jsonObject(with: remote.stdout) as! [String: Any]
        #expect(remoteReport["text"] as? String == expectedText)
        // Remote URLs and local paths (without --allow-local-images) are refused with a 400; the server stays up.
        for url in ["https://example.com/a.png", image] {
            let refused = try await cluster.post("v1/chat/completions", """
                {"model": "\(fixture)", "max_tokens": 2, "messages": [{"role": "user", "content": [
                  {"type": "image_url", "image_url": {"url": "\(url)"}}, {"type": "text", "text": "hi"}]}]}
                """)
            #expect(refused.0 == 400)
        }
        #expect(try await cluster.post("v1/chat/completions", body).0 == 200)
    }
}

extension VisionServingTests {
    /// transformers' greedy text for `kimi-k25-tiny`'s image chats (golden `greedy_text`),
    /// asked of a 2-worker `jindoud local` over the OpenAI API with the images as data: URLs.
    @Test("Kimi-K2.5 image chats over the OpenAI API give transformers' greedy text")
    func kimiImageChatsGiveTransformersText() async throws {
        let fixture = "kimi-k25-tiny"
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path(fixture) + "/golden.json"))
        guard case .object(let golden) = try JSONText.parse(data), case .array(let cases)? = golden["cases"] else {
            throw HarnessError("no cases in \(fixture)/golden.json")
        }
        let cluster = try LocalCluster(fixture: fixture, workers: 2, extraArguments: ["--reasoning-parser", "none"])
        defer { cluster.stop() }
        var asked = 0
        for item in cases {
            guard case .object(let c) = item, case .array(let messages)? = c["messages"], case .string(let expected)? = c["greedy_text"],
                  case .int(let maxTokens)? = c["max_new_tokens"] else { throw HarnessError("a case without messages or greedy_text") }
            let experts: String
            if case .int(let k)? = c["experts_per_token"] { experts = ", \"experts_per_token\": \(k)" } else { experts = "" }
            // OpenAI's shape: image parts become image_url parts with data: URLs.
            let converted: [TemplateValue] = try messages.map { message in
                guard case .object(var m) = message else { return message }
                if case .array(let parts)? = m["content"] {
                    m["content"] = .array(try parts.map { part in
                        guard case .object(let p) = part, case .string(let path)? = p["image"] else { return part }
                        let bytes = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path(fixture) + "/" + path))
                        let type = path.hasSuffix(".jpg") ? "jpeg" : "png"
                        let url = TemplateObject([("url", .string("data:image/\(type);base64," + bytes.base64EncodedString()))])
                        return .object(TemplateObject([("type", .string("image_url")), ("image_url", .object(url))]))
                    })
                }
                return .object(m)
            }
            let body = """
                {"model": "\(fixture)", "max_tokens": \(maxTokens), "temperature": 0, "ignore_eos": true\(experts),
                 "messages": \(try JSONText.encode(.array(converted)))}
                """
            let (status, answer) = try await cluster.post("v1/chat/completions", body)
            #expect(status == 200, "\(answer)")
            guard case .array(let choices)? = answer["choices"], case .object(let choice)? = choices.first,
                  case .object(let message)? = choice["message"] else { throw HarnessError("no choices: \(answer)") }
            #expect(message["content"]?.text == expected, "\(c["name"]?.text ?? "?")")
            asked += 1
        }
        #expect(asked == 4)
    }
}
