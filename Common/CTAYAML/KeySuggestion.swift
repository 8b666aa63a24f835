/// Finds the known key a misspelt one most likely meant, for "unknown key; did you mean …?" messages.
public enum KeySuggestion {
    /// The candidate closest to `name`, ignoring case, when it is close enough to be a slip: at most 1 edit for
    /// names of up to 4 characters, 2 up to 8, 3 beyond. The first of equally close candidates wins.
    public static func closest(to name: String, among candidates: [String]) -> String? {
        let threshold = name.count <= 4 ? 1 : name.count <= 8 ? 2 : 3
        let scored = candidates.map { ($0, editDistance($0.lowercased(), name.lowercased())) }
        guard let best = scored.min(by: { $0.1 < $1.1 }), best.1 <= threshold else { return nil }
        return best.0
    }

    /// The Levenshtein distance between two strings, in characters.
    public static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a)
        let b = Array(b)
        if a.isEmpty { return b.count }
        var previous = Array(0...b.count)
        var current = previous
        for i in 1...a.count {
            current[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
                current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }
}
