import Foundation

/// llama.cpp's SentencePiece tokenizer (`tokenizer.ggml.model = llama`, src/llama-vocab.cpp
/// `llm_tokenizer_spm_session`), over the vocabulary a GGUF file stores: pieces with scores,
/// `<0xXX>` byte pieces for what no piece covers, spaces written as U+2581.
///
/// Encoding a stretch of text between special tokens, as llama.cpp does: a space is put in
/// front when `add_space_prefix` is set and the stretch starts the text or follows a special
/// token; spaces become "▁"; the text is split into characters, and the adjacent pair whose
/// concatenation is a piece with the highest score (the leftmost among equals) is merged,
/// repeatedly; each final symbol is its piece, or is taken apart into the pairs it was merged
/// from, down to bytes where no piece exists.
struct SentencePieceModel: Sendable {
    /// Every token's text → id (llama.cpp's `text_to_token`: all token types).
    let pieces: [String: Int]
    let scores: [Float]
    /// The id of `<0xXX>` per byte value, -1 where the vocabulary has none.
    let byteTokens: [Int]
    /// The ids of byte pieces (decoded as their byte), by id.
    let byteValues: [Int: UInt8]
    let unknownID: Int?
    let addSpacePrefix: Bool

    static let space = "\u{2581}"

    /// Token ids of `text` (no special tokens inside), `afterSpecial` when it starts the
    /// text or follows a special token.
    func encode(_ text: Substring, afterSpecial: Bool) -> [Int] {
        var escaped = (addSpacePrefix && afterSpecial ? " " : "") + String(text)
        escaped = escaped.replacingOccurrences(of: " ", with: Self.space)
        let bytes = Array(escaped.utf8)
        guard !bytes.isEmpty else { return [] }

        // Symbols: one per UTF-8 character, linked in order.
        struct Symbol { var start: Int; var count: Int; var previous: Int; var next: Int }
        var symbols: [Symbol] = []
        var offset = 0
        while offset < bytes.count {
            let lead = bytes[offset]
            let length = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
            let count = min(length, bytes.count - offset)
            symbols.append(Symbol(start: offset, count: count, previous: symbols.count - 1,
                                  next: offset + count == bytes.count ? -1 : symbols.count + 1))
            offset += count
        }
        func slice(_ start: Int, _ count: Int) -> String { String(decoding: bytes[start..<(start + count)], as: UTF8.self) }

        var queue = BigramQueue()
        var merges: [String: (left: Int, right: Int)] = [:]
        func tryBigram(_ left: Int, _ right: Int) {
            guard left >= 0, right >= 0 else { return }
            let joined = slice(symbols[left].start, symbols[left].count + symbols[right].count)
            guard let id = pieces[joined], id < scores.count else { return }
            queue.push(Bigram(left: left, right: right, score: scores[id], size: symbols[left].count + symbols[right].count))
            merges[joined] = (left, right)
        }
        for i in 1..<symbols.count { tryBigram(i - 1, i) }
        while let bigram = queue.pop() {
            let (left, right) = (bigram.left, bigram.right)
            // A pair whose symbols changed since it was queued is stale.
            guard symbols[left].count > 0, symbols[right].count > 0, symbols[left].count + symbols[right].count == bigram.size else { continue }
            symbols[left].count += symbols[right].count
            symbols[right].count = 0
            symbols[left].next = symbols[right].next
            if symbols[right].next >= 0 { symbols[symbols[right].next].previous = left }
            tryBigram(symbols[left].previous, left)
            tryBigram(left, symbols[left].next)
        }

        var output: [Int] = []
        func resegment(_ index: Int) {
            let piece = slice(symbols[index].start, symbols[index].count)
            if let id = pieces[piece] {
                output.append(id)
                return
            }
            guard let (left, right) = merges[piece] else {
                for byte in bytes[symbols[index].start..<(symbols[index].start + symbols[index].count)] {
                    let id = byteTokens[Int(byte)]
                    if id >= 0 { output.append(id) } else if let unknownID { output.append(unknownID) }
                }
                return
            }
            resegment(left)
            resegment(right)
        }
        var index = 0
        while index != -1 {
            resegment(index)
            index = symbols[index].next
        }
        return output
    }

    /// The bytes a piece stands for: its byte for `<0xXX>`, else its text with "▁" as space.
    func bytes(of id: Int, text: String) -> [UInt8] {
        if let byte = byteValues[id] { return [byte] }
        return Array(text.replacingOccurrences(of: Self.space, with: " ").utf8)
    }

    struct Bigram {
        var left: Int, right: Int, score: Float, size: Int
        /// llama.cpp's order: the higher score first, then the leftmost.
        func precedes(_ other: Bigram) -> Bool { score > other.score || (score == other.score && left < other.left) }
    }

    /// A binary max-heap of bigrams in `Bigram.precedes` order.
    struct BigramQueue {
        private var items: [Bigram] = []

        mutating func push(_ bigram: Bigram) {
            items.append(bigram)
            var child = items.count - 1
            while child > 0 {
                let parent = (child - 1) / 2
                guard items[child].precedes(items[parent]) else { break }
                items.swapAt(child, parent)
                child = parent
            }
        }

        mutating func pop() -> Bigram? {
            guard let top = items.first else { return nil }
            let last = items.removeLast()
            if !items.isEmpty {
                items[0] = last
                var parent = 0
                while true {
                    let left = 2 * parent + 1, right = left + 1
                    var best = parent
                    if left < items.count, items[left].precedes(items[best]) { best = left }
                    if right < items.count, items[right].precedes(items[best]) { best = right }
                    if best == parent { break }
                    items.swapAt(parent, best)
                    parent = best
                }
            }
            return top
        }
    }
}
