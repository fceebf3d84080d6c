// Chat messages → prompt tokens, with images for vision-language checkpoints, the way
// transformers' Qwen3-VL processor does it:
//   1. the chat template renders one `<|vision_start|><|image_pad|><|vision_end|>` per image
//      content part (OpenAI `image_url`, or Qwen's `image`);
//   2. each image is decoded and preprocessed (JindouImages, equal to the Qwen2-VL image
//      processor), giving its patch grid;
//   3. the i-th `<|image_pad|>` is repeated t·h·w / merge² times (the image's token count);
//   4. the text is tokenized, and the vision tower's features are laid over the image tokens
//      (`InferenceEngine.multimodal`), with M-RoPE positions.
// Used by the OpenAI API and by `jindouctl generate --image`, so both give the same tokens.

import Foundation
import JindouImages
import JindouModel
import JindouTemplates

/// Where request images may come from.
public struct ImageSourcePolicy: Sendable {
    /// Local paths (plain or `file://`) are read only inside this directory; nil refuses them.
    public var localDirectory: String?
    /// Largest encoded image accepted, in bytes.
    public var maxBytes: Int

    public init(localDirectory: String? = nil, maxBytes: Int = 32 << 20) {
        self.localDirectory = localDirectory
        self.maxBytes = maxBytes
    }
}

/// A bad image reference or image in a request; the message is for the client.
public struct ImageInputError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A checkpoint's image side: its preprocessor (preprocessor_config.json) and the image
/// placeholder token of its tokenizer.
public struct ServingVision: Sendable {
    /// Qwen2-VL's processor (Qwen3-VL) or Kimi-K2.5's, as the tower's kind asks.
    public let preprocessor: any ImagePreprocessing
    public let imagePadToken: String

    /// nil when the checkpoint takes no images.
    public init?(directory: String, description: ModelDescription, text: ServingText) throws {
        guard let vision = description.vision else { return nil }
        let path = (directory as NSString).appendingPathComponent("preprocessor_config.json")
        guard FileManager.default.fileExists(atPath: path) else {
            throw ImageInputError("\(directory) is a vision-language checkpoint but has no preprocessor_config.json")
        }
        switch vision.kind {
        case .qwen3VL:
            let configuration = try VisionPreprocessorConfiguration(contentsOf: path)
            guard configuration.patchSize == vision.patchSize, configuration.mergeSize == vision.spatialMergeSize,
                  configuration.temporalPatchSize == vision.temporalPatchSize else {
                throw ImageInputError("\(path): patch/merge/temporal sizes differ from config.json's vision_config")
            }
            preprocessor = VisionPreprocessor(configuration: configuration)
        case .moonViT:
            let configuration = try KimiImagePreprocessorConfiguration(contentsOf: path)
            guard configuration.patchSize == vision.patchSize, configuration.mergeSize == vision.spatialMergeSize else {
                throw ImageInputError("\(path): patch_size/merge_size differ from config.json's vision_config")
            }
            preprocessor = KimiImagePreprocessor(configuration: configuration)
        }
        guard let token = text.tokenizer?.token(vision.imageTokenID) else {
            throw ImageInputError("\(directory): the tokenizer has no token \(vision.imageTokenID) (image_token_id)")
        }
        imagePadToken = token
    }

    /// The bytes an image reference names: a `data:` URL (base64), or a local path the
    /// policy allows. Remote URLs are never fetched.
    public func load(_ reference: String, policy: ImageSourcePolicy) throws -> Data {
        if reference.hasPrefix("data:") {
            guard let comma = reference.firstIndex(of: ","), reference[..<comma].hasSuffix(";base64") else {
                throw ImageInputError("image data URLs must be base64: data:image/png;base64,…")
            }
            guard let data = Data(base64Encoded: String(reference[reference.index(after: comma)...]), options: .ignoreUnknownCharacters) else {
                throw ImageInputError("the image data URL is not valid base64")
            }
            guard data.count <= policy.maxBytes else { throw ImageInputError("image of \(data.count) bytes exceeds the \(policy.maxBytes)-byte limit") }
            return data
        }
        if reference.hasPrefix("http://") || reference.hasPrefix("https://") {
            throw ImageInputError("remote image URLs are not fetched; send the image as a data: URL")
        }
        let path = reference.hasPrefix("file://") ? String(reference.dropFirst("file://".count)) : reference
        guard let root = policy.localDirectory else {
            throw ImageInputError("local image paths are disabled; send the image as a data: URL (or start jindoud with --allow-local-images DIR)")
        }
        let resolved = URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
        let base = URL(fileURLWithPath: root).standardizedFileURL.resolvingSymlinksInPath().path
        guard resolved == base || resolved.hasPrefix(base.hasSuffix("/") ? base : base + "/") else {
            throw ImageInputError("image path \(path) is outside the allowed directory \(root)")
        }
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: resolved),
              let size = attributes[.size] as? Int else {
            throw ImageInputError("cannot read image \(path)")
        }
        guard size <= policy.maxBytes else { throw ImageInputError("image \(path) has \(size) bytes, over the \(policy.maxBytes)-byte limit") }
        guard let data = FileManager.default.contents(atPath: resolved) else { throw ImageInputError("cannot read image \(path)") }
        return data
    }

    /// Decodes and preprocesses one image.
    public func patches(_ data: Data, source: String) throws -> PixelPatches {
        let decoded: DecodedImage
        do {
            decoded = try preprocessor.decoder.decode(data, source: source)
        } catch {
            throw ImageInputError("\(error)")
        }
        do {
            let input = try preprocessor.preprocess(decoded, source: source)
            return PixelPatches(values: input.pixelValues,
                                grid: ImageGrid(t: input.grid.temporal, h: input.grid.height, w: input.grid.width))
        } catch {
            throw ImageInputError("\(error)")
        }
    }
}

/// A chat turned into prompt tokens (and image features).
public struct ChatPrompt: Sendable {
    public var tokens: [Int]
    public var multimodal: MultimodalPrompt?

    /// Image references in content parts, in order: `{"type": "image_url", "image_url":
    /// {"url": …}}` (or a plain string), and Qwen's `{"type": "image", "image": …}`.
    public static func imageReferences(in messages: [TemplateValue]) throws -> [String] {
        var references: [String] = []
        for message in messages {
            guard case .object(let m) = message, case .array(let parts)? = m["content"] else { continue }
            for part in parts {
                guard case .object(let p) = part else { continue }
                switch (p["type"], p["image_url"], p["image"]) {
                case (_, .object(let u)?, _):
                    guard case .string(let url)? = u["url"] else { throw ImageInputError("image_url parts need a 'url'") }
                    references.append(url)
                case (_, .string(let url)?, _), (_, _, .string(let url)?):
                    references.append(url)
                case (.string("image_url")?, _, _), (.string("image")?, _, _):
                    throw ImageInputError("image content parts need an 'image_url' with a 'url'")
                default:
                    continue
                }
            }
        }
        return references
    }

    /// Renders `messages` with the checkpoint's chat template and tokenizes them; images
    /// are loaded under `policy`, preprocessed and encoded by `engine`'s vision tower.
    public static func build(
        messages: [TemplateValue], tools: [TemplateValue]? = nil, extra: [String: TemplateValue] = [:],
        text: ServingText, vision: ServingVision?, engine: InferenceEngine, policy: ImageSourcePolicy
    ) throws -> ChatPrompt {
        guard let template = text.chatTemplate, let tokenizer = text.tokenizer else {
            throw ImageInputError("this model has no chat template or tokenizer")
        }
        let references = try imageReferences(in: messages)
        guard references.isEmpty || vision != nil else {
            throw ImageInputError("this model does not take images")
        }
        let rendered = try template.render(messages: messages, tools: tools, addGenerationPrompt: true, extra: extra,
                                           specialTokens: text.specialTokens)
        guard let vision, !references.isEmpty else {
            return ChatPrompt(tokens: tokenizer.encode(rendered, addSpecialTokens: false), multimodal: nil)
        }
        let images = try references.enumerated().map { i, reference in
            try vision.patches(try vision.load(reference, policy: policy), source: reference.hasPrefix("data:") ? "image \(i)" : reference)
        }
        let pieces = rendered.components(separatedBy: vision.imagePadToken)
        guard pieces.count - 1 == images.count else {
            throw ImageInputError("the chat template placed \(pieces.count - 1) image placeholders for \(images.count) images")
        }
        let merge = engine.description.vision!.spatialMergeSize
        var expanded = pieces[0]
        for (i, image) in images.enumerated() {
            expanded += String(repeating: vision.imagePadToken, count: image.grid.patchCount / (merge * merge)) + pieces[i + 1]
        }
        let tokens = tokenizer.encode(expanded, addSpecialTokens: false)
        return ChatPrompt(tokens: tokens, multimodal: try engine.multimodal(tokens: tokens, images: images))
    }
}
