/// CTA's shared vocabulary: the wire contract and the logic every part agrees on. No I/O.
public enum CTA {}
