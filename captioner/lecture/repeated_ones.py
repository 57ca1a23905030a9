"""The hand-built RNN of the lecture's slides that outputs 1 when it has just seen two 1s in a row.

    python -m captioner.lecture.repeated_ones          # prints the slide's sequence, its states and outputs

No training: the weights are written down. The hidden state keeps the current input, the previous one and a
constant 1, and the output adds the two inputs and subtracts the 1:

    h_t = ReLU(W_hh h_{t-1} + W_xh x_t)     h_t = [x_t, x_{t-1}, 1],   h_0 = [0, 0, 1]
    y_t = ReLU(W_hy h_t)                    y_t = max(0, x_t + x_{t-1} - 1): 1 exactly when x_{t-1} = x_t = 1

It is the lecture's point in three units: the state is a summary of the past that the weights decide what to
keep, here the one previous input the task needs.
"""

from __future__ import annotations

import numpy as np

W_XH = np.array([[1.0], [0.0], [0.0]])  # (3, 1): x_t goes into the first unit
W_HH = np.array(
    [
        [0.0, 0.0, 0.0],  # the current input is forgotten...
        [1.0, 0.0, 0.0],  # ...moving into the second unit: x_{t-1}
        [0.0, 0.0, 1.0],
    ]
)  # the constant 1 keeps itself
W_HY = np.array([[1.0, 1.0, -1.0]])  # (1, 3): x_t + x_{t-1} - 1
H0 = np.array([0.0, 0.0, 1.0])
SLIDE_INPUT = [0, 1, 0, 1, 1, 1, 0, 1, 1]
SLIDE_OUTPUT = [0, 0, 0, 0, 1, 1, 0, 0, 1]


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


def run(xs: list[int]) -> tuple[list[np.ndarray], list[int]]:
    """The states ``h_1..h_T`` and outputs ``y_1..y_T`` for the inputs ``xs`` (0s and 1s)."""
    h, states, outputs = H0, [], []
    for x in xs:
        h = relu(W_HH @ h + W_XH[:, 0] * x)  # (3,)
        states.append(h)
        outputs.append(int(relu(W_HY @ h)[0]))
    return states, outputs


def main() -> None:
    states, outputs = run(SLIDE_INPUT)
    print("t  x  h_t          y")
    for t, (x, h, y) in enumerate(zip(SLIDE_INPUT, states, outputs), 1):
        print(f"{t:<2} {x}  {np.array2string(h, precision=0, separator=' '):<12} {y}")
    print(f"x: {' '.join(map(str, SLIDE_INPUT))}\ny: {' '.join(map(str, outputs))}")


if __name__ == "__main__":
    main()
