"""Graphs: the paper's k-nearest crystal graph, its line graph, CGCNN features, disk cache, batches."""
