"""The lecture's tools on a trained model: the cell atlas, gradient flow, and what the app's Look inside shows."""
