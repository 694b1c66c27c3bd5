print("nodus")
