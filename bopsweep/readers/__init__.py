"""What reads a study: status, the table and its statistics, export, TensorBoard, the figures.

Readers never train and never write a study (only their own outputs).
"""
